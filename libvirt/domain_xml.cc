#include "libvirt/domain_xml.h"

#include <libxml/c14n.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include <cstdlib>
#include <memory>

#include "output-commit/qemu_options.h"

namespace tandem::libvirt {
namespace {

struct DocFree {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
using Doc = std::unique_ptr<xmlDoc, DocFree>;

const xmlChar* X(const char* s) { return reinterpret_cast<const xmlChar*>(s); }
std::string S(const xmlChar* s) { return s == nullptr ? "" : reinterpret_cast<const char*>(s); }

// Blank text between elements dropped, so that a rewritten document pretty-prints and compares cleanly. No
// network access: the XML comes from libvirt or an operator.
Result<Doc> Parse(std::string_view xml) {
  xmlDoc* doc = xmlReadMemory(xml.data(), int(xml.size()), "domain.xml", nullptr,
                              XML_PARSE_NOBLANKS | XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
  if (doc == nullptr) {
    const xmlError* e = xmlGetLastError();
    return Status::InvalidArgument("domain XML does not parse" +
                                   (e != nullptr && e->message != nullptr ? ": " + std::string(e->message) : ""));
  }
  return Doc(doc);
}

std::string Attr(xmlNode* n, const char* name) {
  xmlChar* v = xmlGetProp(n, X(name));
  std::string s = S(v);
  xmlFree(v);
  return s;
}

bool IsQemuElement(const xmlNode* n) { return n->ns != nullptr && S(n->ns->href) == kQemuNamespace; }

std::vector<xmlNode*> Children(xmlNode* parent) {
  std::vector<xmlNode*> out;
  for (xmlNode* c = parent->children; c != nullptr; c = c->next) {
    if (c->type == XML_ELEMENT_NODE) out.push_back(c);
  }
  return out;
}

xmlNode* Child(xmlNode* parent, const char* name) {
  for (xmlNode* c : Children(parent)) {
    if (!IsQemuElement(c) && S(c->name) == name) return c;
  }
  return nullptr;
}

void Remove(xmlNode* n) {
  xmlUnlinkNode(n);
  xmlFreeNode(n);
}

void RemoveAll(xmlNode* parent, const char* name) {
  while (xmlNode* c = Child(parent, name)) Remove(c);
}

// A fresh element `name` (text `text` unless empty) in the place of the first old one, or appended; any other old
// ones removed. In place, so that rewriting twice gives the same order.
xmlNode* Replace(xmlNode* parent, const char* name, const std::string& text = "") {
  xmlNode* fresh = xmlNewNode(nullptr, X(name));
  if (!text.empty()) xmlNodeAddContent(fresh, X(text.c_str()));
  if (xmlNode* old = Child(parent, name)) {
    xmlReplaceNode(old, fresh);
    xmlFreeNode(old);
    for (xmlNode* c : Children(parent)) {
      if (c != fresh && !IsQemuElement(c) && S(c->name) == name) Remove(c);
    }
  } else {
    xmlAddChild(parent, fresh);
  }
  return fresh;
}

xmlNode* AddChild(xmlNode* parent, const char* name, std::initializer_list<std::pair<const char*, std::string>> attrs,
                  const std::string& text = "") {
  xmlNode* n = xmlNewChild(parent, nullptr, X(name), nullptr);
  if (!text.empty()) xmlNodeAddContent(n, X(text.c_str()));
  for (const auto& [k, v] : attrs) xmlNewProp(n, X(k), X(v.c_str()));
  return n;
}

// "<interface type='network'>" and the like, for messages.
std::string Describe(xmlNode* n) {
  std::string d = "<" + S(n->name);
  for (const char* a : {"type", "model", "device", "bus", "name"}) {
    if (std::string v = Attr(n, a); !v.empty()) d += " " + std::string(a) + "='" + v + "'";
  }
  if (xmlNode* target = Child(n, "target"); target != nullptr && !Attr(target, "dev").empty()) {
    d += "> (" + Attr(target, "dev") + ")";
  } else if (xmlNode* mac = Child(n, "mac"); mac != nullptr) {
    d += "> (" + Attr(mac, "address") + ")";
  } else {
    d += ">";
  }
  return d;
}

// Devices through which the guest reaches the world or keeps state outside RAM: what tandem protects only as its
// own [nic], [disk] and console.
bool IsDataPath(const std::string& element) {
  for (const char* e : {"disk", "interface", "hostdev", "serial", "parallel", "console", "channel", "filesystem",
                        "smartcard", "redirdev", "shmem", "vsock", "tpm"}) {
    if (element == e) return true;
  }
  return false;
}

// What libvirt provides that the standby's QEMU (tandem's own command line) has as well: the root PCI bus, the
// chipset's built-in controllers (-nodefaults keeps them), PS/2 input (built into the chipset), the audio
// backend (no device).
bool KeptAsIs(xmlNode* n) {
  const std::string e = S(n->name), type = Attr(n, "type"), model = Attr(n, "model");
  if (e == "emulator" || e == "audio") return true;
  if (e == "input") return Attr(n, "bus") == "ps2";
  if (e == "controller") {
    if (type == "pci") return model == "pcie-root" || model == "pci-root";
    // q35's ICH9 AHCI and pc's PIIX IDE are part of the machine; the USB controller is rewritten below.
    return (type == "sata" || type == "ide") && Attr(n, "index") == "0";
  }
  return false;
}

// The device of `n` sits at root-bus slot `slot`.
bool AtRootSlot(xmlNode* n, const char* slot) {
  xmlNode* address = Child(n, "address");
  if (address == nullptr || Attr(address, "type") != "pci") return false;
  const std::string bus = Attr(address, "bus"), at = Attr(address, "slot");
  if (!(bus == "0x00" || bus == "0" || bus.empty()) || at.empty()) return false;
  return std::strtoul(at.c_str(), nullptr, 0) == std::strtoul(slot, nullptr, 0);
}

Status RewriteDevices(xmlNode* domain, bool allow_unprotected, ProtectedDomain* out) {
  xmlNode* devices = Child(domain, "devices");
  if (devices == nullptr) devices = xmlNewChild(domain, nullptr, X("devices"), nullptr);
  std::vector<std::string> refused;
  for (xmlNode* d : Children(devices)) {
    const std::string e = S(d->name);
    if (KeptAsIs(d)) continue;
    if (e == "controller" && Attr(d, "type") == "usb" && Attr(d, "model") == "none") continue;
    if (e == "memballoon" && Attr(d, "model") == "none") continue;
    if (IsDataPath(e)) {
      (allow_unprotected ? out->unprotected : refused).push_back(Describe(d));
      continue;
    }
    out->removed.push_back(Describe(d));
    Remove(d);
  }
  if (!refused.empty()) {
    std::string list;
    for (const std::string& r : refused) list += (list.empty() ? "" : ", ") + r;
    return Status::InvalidArgument(
        "the domain has devices tandem does not protect: " + list +
        ". Their output or state would escape the protection (seen before the standby has it, or lost at "
        "failover). Remove them (the NIC and disk go in [nic] and [disk], the console is tandem's), or set [vm] "
        "allow_unprotected_devices = true to run them unprotected");
  }
  for (xmlNode* d : Children(devices)) {
    for (const char* slot : {output_commit::kNicPciSlot, qemu::kDiskPciSlot}) {
      if (AtRootSlot(d, slot)) {
        return Status::InvalidArgument(Describe(d) + " sits at PCI slot " + slot +
                                       " of the root bus, which tandem reserves for its own NIC and disk");
      }
    }
  }
  // libvirt adds a USB controller and a balloon unless told "none"; the standby would have neither.
  bool has_usb = false, has_balloon = false;  // after the loop above, only model='none' ones are left
  for (xmlNode* d : Children(devices)) {
    has_usb |= S(d->name) == "controller" && Attr(d, "type") == "usb";
    has_balloon |= S(d->name) == "memballoon";
  }
  if (!has_usb) AddChild(devices, "controller", {{"type", "usb"}, {"index", "0"}, {"model", "none"}});
  if (!has_balloon) AddChild(devices, "memballoon", {{"model", "none"}});
  return Status::Ok();
}

// The machine, memory, vCPUs, boot and clock as the standby's QEMU has them.
Status RewriteMachine(xmlNode* domain, const qemu::VmConfig& vm, ProtectedDomain* out) {
  xmlSetProp(domain, X("type"), X(vm.accel == "kvm" ? "kvm" : "qemu"));
  if (xmlNode* cpu = Child(domain, "cpu"); cpu != nullptr && Child(cpu, "numa") != nullptr) {
    return Status::InvalidArgument("the domain has NUMA cells (<cpu><numa>): libvirt would back each cell with its "
                                   "own memory, and tandem protects one RAM file; remove them");
  }
  const std::string kib = std::to_string(vm.memory_mb * 1024);
  for (const char* name : {"memory", "currentMemory"}) xmlNewProp(Replace(domain, name, kib), X("unit"), X("KiB"));
  // Guest RAM is tandem's file (-machine memory-backend=mem): a <memoryBacking> of libvirt's would back nothing
  // the guest uses, or, with hugepages or preallocation, cost a second copy of guest RAM.
  // <cpu> too: libvirt itself adds qemu64, QEMU's default, which is what the standby runs (not worth a note).
  for (const char* name : {"maxMemory", "memoryBacking", "numatune", "cpu", "vcpus"}) {
    xmlNode* n = Child(domain, name);
    if (n == nullptr) continue;
    xmlNode* model = std::string(name) == "cpu" ? Child(n, "model") : nullptr;
    xmlChar* model_name = model != nullptr ? xmlNodeGetContent(model) : nullptr;
    const bool libvirts_default = S(model_name) == "qemu64";
    xmlFree(model_name);
    if (!libvirts_default) out->removed.push_back("<" + std::string(name) + ">");
    RemoveAll(domain, name);
  }
  Replace(domain, "vcpu", std::to_string(vm.vcpus));
  xmlNode* os = Replace(domain, "os");
  AddChild(os, "type", {{"arch", "x86_64"}, {"machine", vm.machine}}, "hvm");
  AddChild(os, "kernel", {}, vm.kernel);
  if (!vm.initrd.empty()) AddChild(os, "initrd", {}, vm.initrd);
  if (!vm.append.empty()) AddChild(os, "cmdline", {}, vm.append);
  // ACPI as the standby has it (libvirt passes -no-acpi without it); nothing else that changes the machine.
  xmlNode* features = Replace(domain, "features");
  xmlNewChild(features, nullptr, X("acpi"), nullptr);
  xmlNewProp(Replace(domain, "clock"), X("offset"), X("utc"));
  // A guest panic is not a reason to stop the VM (qemu_args.cc: -action panic=none; the replica holds the same
  // crash): libvirt, which sees QEMU's GUEST_PANICKED too, must not destroy or restart the domain for it.
  Replace(domain, "on_crash", "preserve");
  return Status::Ok();
}

void RewriteCommandLine(xmlNode* domain, const qemu::VmConfig& vm) {
  xmlNs* ns = xmlSearchNsByHref(domain->doc, domain, X(kQemuNamespace));
  if (ns == nullptr) ns = xmlNewNs(domain, X(kQemuNamespace), X("qemu"));
  xmlNode* fresh = xmlNewNode(ns, X("commandline"));
  for (const std::string& arg : CommandLineArgs(vm)) {
    xmlNode* a = xmlNewChild(fresh, ns, X("arg"), nullptr);
    xmlNewProp(a, X("value"), X(arg.c_str()));
  }
  xmlNode* old = nullptr;
  for (xmlNode* c : Children(domain)) {
    if (IsQemuElement(c) && S(c->name) == "commandline") {
      if (old == nullptr) {
        old = c;
      } else {
        Remove(c);
      }
    }
  }
  if (old != nullptr) {
    xmlReplaceNode(old, fresh);
    xmlFreeNode(old);
  } else {
    xmlAddChild(domain, fresh);
  }
}

}  // namespace

std::vector<std::string> CommandLineArgs(const qemu::VmConfig& vm) {
  qemu::VmConfig own = vm;
  own.extra_args.clear();
  const std::vector<std::string> all = qemu::BuildQemuArgs(own, qemu::QemuRole::kPrimary);
  std::vector<std::string> args;
  for (size_t i = 0; i < all.size(); ++i) {
    const std::string& option = all[i];
    if (option == "-nodefaults" || option == "-no-user-config") continue;  // libvirt passes both
    if (i + 1 == all.size()) break;
    const std::string& value = all[++i];
    // In the domain XML (name, <os>, <vcpu>, <memory>, domain type) or libvirt's own (-display none, no VGA
    // without <video>).
    if (option == "-name" || option == "-smp" || option == "-m" || option == "-vga" || option == "-display" ||
        option == "-kernel" || option == "-initrd" || option == "-append") {
      continue;
    }
    // QEMU merges -machine options, the last value of a key winning: this one comes after libvirt's.
    if (option == "-machine") {
      args.insert(args.end(), {"-machine", std::string("memory-backend=") + qemu::kMainRamBlock});
      continue;
    }
    args.insert(args.end(), {option, value});
  }
  args.insert(args.end(), vm.extra_args.begin(), vm.extra_args.end());
  return args;
}

Result<ProtectedDomain> ProtectDomainXml(std::string_view domain_xml, const qemu::VmConfig& vm,
                                         bool allow_unprotected) {
  TANDEM_ASSIGN_OR_RETURN(Doc doc, Parse(domain_xml));
  xmlNode* domain = xmlDocGetRootElement(doc.get());
  if (domain == nullptr || S(domain->name) != "domain" || domain->ns != nullptr) {
    return Status::InvalidArgument("not a libvirt domain XML (the root element is not <domain>)");
  }
  if (Child(domain, "name") == nullptr) return Status::InvalidArgument("the domain XML has no <name>");
  ProtectedDomain out;
  TANDEM_RETURN_IF_ERROR(RewriteMachine(domain, vm, &out));
  TANDEM_RETURN_IF_ERROR(RewriteDevices(domain, allow_unprotected, &out));
  RewriteCommandLine(domain, vm);
  xmlChar* text = nullptr;
  int size = 0;
  xmlDocDumpFormatMemoryEnc(doc.get(), &text, &size, "UTF-8", 1);
  if (text == nullptr) return Status::IoError("could not serialise the domain XML");
  out.xml.assign(reinterpret_cast<char*>(text), size_t(size));
  xmlFree(text);
  // libvirt reads the document without the declaration too; drop it, as virsh dumpxml does.
  if (out.xml.rfind("<?xml", 0) == 0) out.xml.erase(0, out.xml.find('\n') + 1);
  return out;
}

Result<std::string> CanonicalXml(std::string_view xml) {
  TANDEM_ASSIGN_OR_RETURN(Doc doc, Parse(xml));
  xmlChar* text = nullptr;
  const int size = xmlC14NDocDumpMemory(doc.get(), nullptr, XML_C14N_1_0, nullptr, 0, &text);
  if (size < 0 || text == nullptr) return Status::IoError("could not canonicalise the XML");
  std::string out(reinterpret_cast<char*>(text), size_t(size));
  xmlFree(text);
  return out;
}

}  // namespace tandem::libvirt
