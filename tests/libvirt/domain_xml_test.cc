// The protected domain XML (libvirt/domain_xml.h), checked by parsing what it produces.
#include "libvirt/domain_xml.h"

#include <gtest/gtest.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include <memory>

#include "output-commit/qemu_options.h"

namespace tandem::libvirt {
namespace {

qemu::VmConfig Vm() {
  qemu::VmConfig vm;
  vm.name = "web1";
  vm.memory_mb = 256;
  vm.vcpus = 2;
  vm.accel = "tcg";
  vm.kernel = "/boot/guest.elf";
  vm.append = "fill=sparse";
  vm.ram_path = "/dev/shm/tandem/web1.primary.ram";
  vm.qmp_socket = "/run/tandem/web1/qmp.sock";
  vm.serial_log = "/run/tandem/web1/serial.log";
  vm.output_args = output_commit::QemuConsoleArgs("/run/tandem/web1").value();
  const auto nic = output_commit::QemuNicArgs({.mac = "52:54:00:12:34:56"}, "/run/tandem/web1").value();
  vm.output_args.insert(vm.output_args.end(), nic.begin(), nic.end());
  vm.disk_socket = "/run/tandem/web1/disk.sock";
  return vm;
}

// A domain as virt-install would define it, without disks and NICs.
const char kPlainDomain[] = R"(<domain type='kvm'>
  <name>web1</name>
  <uuid>4d71b2dd-24ab-4541-a3c1-d037c4a73fbc</uuid>
  <memory unit='KiB'>1048576</memory>
  <currentMemory unit='KiB'>524288</currentMemory>
  <memoryBacking><hugepages/></memoryBacking>
  <vcpu placement='static'>4</vcpu>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/><vmport state='off'/></features>
  <cpu mode='host-passthrough'/>
  <clock offset='localtime'><timer name='rtc' tickpolicy='catchup'/></clock>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' index='0' model='qemu-xhci'/>
    <controller type='sata' index='0'/>
    <controller type='pci' index='0' model='pcie-root'/>
    <controller type='pci' index='1' model='pcie-root-port'/>
    <input type='tablet' bus='usb'/>
    <input type='keyboard' bus='ps2'/>
    <graphics type='vnc' port='-1'/>
    <video><model type='virtio'/></video>
    <memballoon model='virtio'/>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
  </devices>
</domain>)";

struct XmlDoc {
  explicit XmlDoc(const std::string& text)
      : doc(xmlReadMemory(text.data(), int(text.size()), "t.xml", nullptr, XML_PARSE_NOBLANKS), xmlFreeDoc) {}
  // Text of every node the XPath selects (attributes' values, elements' content).
  std::vector<std::string> All(const char* xpath) const {
    std::vector<std::string> out;
    std::unique_ptr<xmlXPathContext, void (*)(xmlXPathContextPtr)> ctx(xmlXPathNewContext(doc.get()),
                                                                       xmlXPathFreeContext);
    xmlXPathRegisterNs(ctx.get(), BAD_CAST "qemu", BAD_CAST kQemuNamespace);
    std::unique_ptr<xmlXPathObject, void (*)(xmlXPathObjectPtr)> r(
        xmlXPathEvalExpression(BAD_CAST xpath, ctx.get()), xmlXPathFreeObject);
    if (r == nullptr || r->nodesetval == nullptr) return out;
    for (int i = 0; i < r->nodesetval->nodeNr; ++i) {
      xmlChar* c = xmlNodeGetContent(r->nodesetval->nodeTab[i]);
      out.emplace_back(reinterpret_cast<char*>(c));
      xmlFree(c);
    }
    return out;
  }
  std::string One(const char* xpath) const {
    auto all = All(xpath);
    return all.size() == 1 ? all[0] : "<" + std::to_string(all.size()) + " matches>";
  }
  std::unique_ptr<xmlDoc, void (*)(xmlDocPtr)> doc;
};

// The value after `option` in the commandline, or "" (first occurrence).
std::string ArgAfter(const std::vector<std::string>& args, const std::string& option, const std::string& prefix) {
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == option && args[i + 1].rfind(prefix, 0) == 0) return args[i + 1];
  }
  return "";
}

TEST(DomainXmlTest, PlainDomainGetsTandemsRamNicDiskAndMachine) {
  auto p = ProtectDomainXml(kPlainDomain, Vm(), false);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  XmlDoc x(p->xml);
  EXPECT_EQ(x.One("/domain/@type"), "qemu") << "accel tcg";
  EXPECT_EQ(x.One("/domain/name"), "web1");
  EXPECT_EQ(x.One("/domain/uuid"), "4d71b2dd-24ab-4541-a3c1-d037c4a73fbc") << "identity kept";
  EXPECT_EQ(x.One("/domain/memory"), "262144");
  EXPECT_EQ(x.One("/domain/currentMemory"), "262144");
  EXPECT_EQ(x.One("/domain/vcpu"), "2");
  EXPECT_EQ(x.One("/domain/os/kernel"), "/boot/guest.elf");
  EXPECT_EQ(x.One("/domain/os/cmdline"), "fill=sparse");
  EXPECT_EQ(x.One("/domain/os/type/@machine"), "q35");
  EXPECT_EQ(x.All("/domain/features/*").size(), 1u);
  EXPECT_EQ(x.All("/domain/features/acpi").size(), 1u) << "-no-acpi would differ from the standby";
  EXPECT_EQ(x.One("/domain/clock/@offset"), "utc");
  EXPECT_EQ(x.One("/domain/on_crash"), "preserve") << "was destroy: libvirt would kill a panicked guest";
  EXPECT_TRUE(x.All("/domain/memoryBacking").empty());
  EXPECT_TRUE(x.All("/domain/cpu").empty());
  EXPECT_EQ(x.One("/domain/devices/controller[@type='usb']/@model"), "none");
  EXPECT_EQ(x.One("/domain/devices/memballoon/@model"), "none");
  EXPECT_TRUE(x.All("/domain/devices/controller[@model='pcie-root-port']").empty());
  EXPECT_TRUE(x.All("/domain/devices/graphics | /domain/devices/video | /domain/devices/rng").empty());
  EXPECT_EQ(x.All("/domain/devices/input").size(), 1u) << "PS/2 kept, USB tablet removed";
  EXPECT_FALSE(p->removed.empty());

  const std::vector<std::string> args = x.All("/domain/qemu:commandline/qemu:arg/@value");
  EXPECT_EQ(args, CommandLineArgs(Vm()));
  EXPECT_EQ(ArgAfter(args, "-machine", ""), "memory-backend=mem");
  EXPECT_EQ(ArgAfter(args, "-object", "memory-backend-file"),
            "memory-backend-file,id=mem,size=256M,mem-path=/dev/shm/tandem/web1.primary.ram,share=on");
  EXPECT_EQ(ArgAfter(args, "-qmp", ""), "unix:/run/tandem/web1/qmp.sock,server=on,wait=off");
  EXPECT_NE(ArgAfter(args, "-device", "virtio-net-pci").find(",addr=0x18,"), std::string::npos);
  EXPECT_NE(ArgAfter(args, "-device", "virtio-blk-pci").find(",addr=0x19,"), std::string::npos);
  EXPECT_NE(ArgAfter(args, "-blockdev", "driver=nbd").find("/run/tandem/web1/disk.sock"), std::string::npos);
  for (const char* owned : {"-name", "-m", "-smp", "-kernel", "-append", "-nodefaults", "-display"}) {
    EXPECT_EQ(std::find(args.begin(), args.end(), owned), args.end()) << owned << " is the domain XML's";
  }
}

TEST(DomainXmlTest, ProtectingAProtectedDomainChangesNothing) {
  auto once = ProtectDomainXml(kPlainDomain, Vm(), false);
  ASSERT_TRUE(once.ok()) << once.status().ToString();
  auto twice = ProtectDomainXml(once->xml, Vm(), false);
  ASSERT_TRUE(twice.ok()) << twice.status().ToString();
  auto a = CanonicalXml(once->xml), b = CanonicalXml(twice->xml);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a.value(), b.value());
  EXPECT_TRUE(twice->removed.empty());
  // What libvirt's dumpxml returns is reformatted and reordered: the same after canonicalisation.
  std::string reindented = once->xml;
  for (size_t at = 0; (at = reindented.find("\n  ", at)) != std::string::npos; at += 5) reindented.replace(at, 3, "\n\t\t");
  auto c = CanonicalXml(reindented);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(a.value(), c.value());
}

TEST(DomainXmlTest, ChangedConfigurationReplacesTheCommandLineInsteadOfAddingOne) {
  auto once = ProtectDomainXml(kPlainDomain, Vm(), false);
  ASSERT_TRUE(once.ok());
  qemu::VmConfig bigger = Vm();
  bigger.memory_mb = 512;
  auto again = ProtectDomainXml(once->xml, bigger, false);
  ASSERT_TRUE(again.ok());
  XmlDoc x(again->xml);
  EXPECT_EQ(x.All("/domain/qemu:commandline").size(), 1u);
  EXPECT_EQ(x.One("/domain/memory"), "524288");
  EXPECT_EQ(ArgAfter(x.All("/domain/qemu:commandline/qemu:arg/@value"), "-object", "memory-backend-file"),
            "memory-backend-file,id=mem,size=512M,mem-path=/dev/shm/tandem/web1.primary.ram,share=on");
}

std::string WithDevice(const std::string& device) {
  std::string xml = kPlainDomain;
  xml.insert(xml.find("</devices>"), device);
  return xml;
}

TEST(DomainXmlTest, ForeignNicIsRefusedByName) {
  auto p = ProtectDomainXml(WithDevice("<interface type='network'><mac address='52:54:00:aa:bb:cc'/>"
                                       "<source network='default'/></interface>"),
                            Vm(), false);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("<interface type='network'> (52:54:00:aa:bb:cc)"), std::string::npos)
      << p.status().message();
  EXPECT_NE(p.status().message().find("allow_unprotected_devices"), std::string::npos);
}

TEST(DomainXmlTest, ForeignDiskIsRefusedByName) {
  auto p = ProtectDomainXml(WithDevice("<disk type='file' device='disk'><source file='/var/lib/x.qcow2'/>"
                                       "<target dev='vda' bus='virtio'/></disk>"),
                            Vm(), false);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("<disk type='file' device='disk'> (vda)"), std::string::npos)
      << p.status().message();
}

TEST(DomainXmlTest, ForeignDeviceIsKeptAndNamedWhenAllowed) {
  auto p = ProtectDomainXml(WithDevice("<serial type='pty'/>"), Vm(), true);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->unprotected, std::vector<std::string>{"<serial type='pty'>"});
  EXPECT_EQ(XmlDoc(p->xml).All("/domain/devices/serial").size(), 1u);
}

TEST(DomainXmlTest, DeviceAtTandemsPciSlotIsRefused) {
  auto p = ProtectDomainXml(WithDevice("<interface type='user'><address type='pci' domain='0x0000' bus='0x00' "
                                       "slot='0x18' function='0x0'/></interface>"),
                            Vm(), true);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("slot 0x18"), std::string::npos) << p.status().message();
}

TEST(DomainXmlTest, DomainWithoutMemoryGetsTandemsSize) {
  std::string xml = kPlainDomain;
  for (const char* tag : {"memory", "currentMemory"}) {
    const size_t from = xml.find(std::string("<") + tag + " "), to = xml.find(std::string("</") + tag + ">");
    xml.erase(from, to + std::string(tag).size() + 3 - from);
  }
  ASSERT_EQ(xml.find("emory unit"), std::string::npos);
  auto p = ProtectDomainXml(xml, Vm(), false);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(XmlDoc(p->xml).One("/domain/memory"), "262144");
}

TEST(DomainXmlTest, NumaCellsAreRefused) {
  std::string xml = kPlainDomain;
  xml.replace(xml.find("<cpu mode='host-passthrough'/>"), 30,
              "<cpu><numa><cell id='0' cpus='0-3' memory='1048576' unit='KiB'/></numa></cpu>");
  auto p = ProtectDomainXml(xml, Vm(), false);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("NUMA"), std::string::npos);
}

TEST(DomainXmlTest, NotADomainIsRefused) {
  EXPECT_FALSE(ProtectDomainXml("<network><name>x</name></network>", Vm(), false).ok());
  EXPECT_FALSE(ProtectDomainXml("<domain><name>x</name>", Vm(), false).ok()) << "unterminated";
  EXPECT_FALSE(ProtectDomainXml("<domain type='kvm'/>", Vm(), false).ok()) << "no name";
}

}  // namespace
}  // namespace tandem::libvirt
