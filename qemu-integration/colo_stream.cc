#include "qemu-integration/colo_stream.h"

#include <algorithm>
#include <cassert>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string_view>

#include "common/fd.h"

namespace tandem::qemu {
namespace {

using replicator::kPageSize;

constexpr uint32_t kFileMagic = 0x5145564d;  // "QEVM"
constexpr uint32_t kFileVersion = 3;

// Top-level section types.
constexpr uint8_t kSecEof = 0x00;
constexpr uint8_t kSecStart = 0x01;
constexpr uint8_t kSecPart = 0x02;
constexpr uint8_t kSecEnd = 0x03;
constexpr uint8_t kSecFull = 0x04;
constexpr uint8_t kSecSubsection = 0x05;
constexpr uint8_t kSecVmdesc = 0x06;
constexpr uint8_t kSecConfiguration = 0x07;
constexpr uint8_t kSecCommand = 0x08;
constexpr uint8_t kSecFooter = 0x7e;

constexpr uint16_t kCmdEnableColo = 8;

constexpr uint32_t kRamSectionVersion = 4;

// RAM record flags (the low bits of the page-aligned be64 offset).
constexpr uint64_t kFlagFull = 0x01;
constexpr uint64_t kFlagZero = 0x02;
constexpr uint64_t kFlagMemSize = 0x04;
constexpr uint64_t kFlagPage = 0x08;
constexpr uint64_t kFlagEos = 0x10;
constexpr uint64_t kFlagContinue = 0x20;
constexpr uint64_t kFlagXbzrle = 0x40;
constexpr uint64_t kFlagHook = 0x80;
constexpr uint64_t kFlagCompressPage = 0x100;
constexpr uint64_t kFlagMask = kPageSize - 1;

constexpr size_t kMaxDeviceStateBytes = size_t(256) << 20;
constexpr uint32_t kMaxVmdescBytes = 64u << 20;

std::string Hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
  return buf;
}

std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c >= 0x20 && c < 0x7f) {
      out += c;
    } else {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\x%02x", uint8_t(c));
      out += buf;
    }
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------

const char* ColoMessageName(uint32_t message) {
  static const char* const kNames[] = {"CHECKPOINT_READY", "CHECKPOINT_REQUEST", "CHECKPOINT_REPLY", "VMSTATE_SEND",
                                       "VMSTATE_SIZE",     "VMSTATE_RECEIVED",   "VMSTATE_LOADED"};
  return message < std::size(kNames) ? kNames[message] : "unknown COLO message";
}

Status ColoStreamParser::Fail(StreamError error, const std::string& what) {
  error_ = error;
  const std::string msg = what + " (stream offset " + std::to_string(reader_->offset()) + ")";
  const bool unsupported = error == StreamError::kUnknownVersion || error == StreamError::kUnsupportedFeature;
  return unsupported ? Status::Unsupported(msg) : Status::Corruption(msg);
}

Status ColoStreamParser::Track(Status st) {
  if (st.ok()) {
    error_ = StreamError::kNone;
  } else if (error_ == StreamError::kNone) {
    error_ = reader_->error();
  }
  return st;
}

Status ColoStreamParser::ExpectMessage(ColoMessage expected) {
  error_ = StreamError::kNone;
  return Track(ExpectMessageBody(expected));
}

Status ColoStreamParser::ParsePrecopy(const LayoutCallback& on_layout, replicator::VmDescriptor* descriptor,
                                      std::vector<uint8_t>* device_state) {
  error_ = StreamError::kNone;
  return Track(ParsePrecopyBody(on_layout, descriptor, device_state));
}

Status ColoStreamParser::ParseCheckpointState(replicator::PageSink* sink, std::vector<uint8_t>* device_state) {
  error_ = StreamError::kNone;
  return Track(ParseCheckpointBody(sink, device_state));
}

Status ColoStreamParser::ExpectMessageBody(ColoMessage expected) {
  uint32_t m = 0;
  TANDEM_RETURN_IF_ERROR(reader_->ReadBe32(&m));
  if (m != uint32_t(expected)) {
    return Fail(StreamError::kUnexpectedMessage, std::string("expected COLO message ") + ColoMessageName(uint32_t(expected)) +
                                               ", got " + ColoMessageName(m) + " (" + std::to_string(m) + ")");
  }
  return Status::Ok();
}

Status ColoStreamParser::ParseConfiguration(std::string* raw) {
  // vmstate "configuration": be32 len, the machine type name, then optional subsections
  // (0x05, u8 len, name, be32 version, fields). There is no footer: the next top-level byte follows.
  raw->assign(1, char(kSecConfiguration));
  auto append_be32 = [raw](uint32_t v) {
    uint8_t b[4];
    StoreBe32(b, v);
    raw->append(reinterpret_cast<char*>(b), 4);
  };
  uint32_t len = 0;
  TANDEM_RETURN_IF_ERROR(reader_->ReadBe32(&len));
  if (len == 0 || len > 256)
    return Fail(StreamError::kBadConfiguration, "configuration machine name length " + std::to_string(len));
  std::string name(len, '\0');
  TANDEM_RETURN_IF_ERROR(reader_->Read(name.data(), len));
  append_be32(len);
  raw->append(name);
  for (;;) {
    // Peek: a subsection marker, or the next top-level section.
    auto next = reader_->TakeAvailable(1);
    if (!next.ok()) return next.status();
    if ((*next)[0] != kSecSubsection) {
      reader_->Unread(1);
      return Status::Ok();
    }
    raw->push_back(char(kSecSubsection));
    uint8_t name_len = 0;
    TANDEM_RETURN_IF_ERROR(reader_->ReadU8(&name_len));
    std::string sub(name_len, '\0');
    TANDEM_RETURN_IF_ERROR(reader_->Read(sub.data(), name_len));
    uint32_t version = 0;
    TANDEM_RETURN_IF_ERROR(reader_->ReadBe32(&version));
    raw->push_back(char(name_len));
    raw->append(sub);
    append_be32(version);
    if (sub == "configuration/target-page-bits") {
      uint32_t bits = 0;
      TANDEM_RETURN_IF_ERROR(reader_->ReadBe32(&bits));
      if (bits != 12)
        return Fail(StreamError::kUnsupportedFeature, "target page bits " + std::to_string(bits) + " (only 4 KiB pages)");
      append_be32(bits);
    } else if (sub == "configuration/capabilities") {
      uint32_t count = 0;
      TANDEM_RETURN_IF_ERROR(reader_->ReadBe32(&count));
      if (count > 64) return Fail(StreamError::kBadConfiguration, "configuration capability count " + std::to_string(count));
      append_be32(count);
      for (uint32_t i = 0; i < count; ++i) {
        uint8_t cap_len = 0;
        TANDEM_RETURN_IF_ERROR(reader_->ReadU8(&cap_len));
        std::string cap(cap_len, '\0');
        TANDEM_RETURN_IF_ERROR(reader_->Read(cap.data(), cap_len));
        raw->push_back(char(cap_len));
        raw->append(cap);
      }
    } else if (sub == "configuration/uuid") {
      char uuid[16];
      TANDEM_RETURN_IF_ERROR(reader_->Read(uuid, sizeof(uuid)));
      raw->append(uuid, sizeof(uuid));
    } else {
      return Fail(StreamError::kUnsupportedFeature, "unknown configuration subsection '" + Printable(sub) + "'");
    }
  }
}

Status ColoStreamParser::ParseFooter() {
  uint8_t type = 0;
  uint32_t sid = 0;
  TANDEM_RETURN_IF_ERROR(reader_->ReadU8(&type));
  if (type != kSecFooter)
    return Fail(StreamError::kBadFooter, "expected section footer 0x7e after RAM records, got " + Hex(type));
  TANDEM_RETURN_IF_ERROR(reader_->ReadBe32(&sid));
  if (sid != ram_section_id_) {
    return Fail(StreamError::kBadFooter, "section footer names section " + std::to_string(sid) +
                                               ", expected RAM section " + std::to_string(ram_section_id_));
  }
  return Status::Ok();
}

Status ColoStreamParser::ParseRamSectionHeader(uint8_t type, bool* is_start) {
  uint32_t sid = 0;
  TANDEM_RETURN_IF_ERROR(reader_->ReadBe32(&sid));
  *is_start = type == kSecStart;
  if (type == kSecStart) {
    uint8_t len = 0;
    TANDEM_RETURN_IF_ERROR(reader_->ReadU8(&len));
    char name[256];
    TANDEM_RETURN_IF_ERROR(reader_->Read(name, len));
    uint32_t instance = 0, version = 0;
    TANDEM_RETURN_IF_ERROR(reader_->ReadBe32(&instance));
    TANDEM_RETURN_IF_ERROR(reader_->ReadBe32(&version));
    const std::string_view idstr(name, len);
    if (idstr != "ram") {
      return Fail(StreamError::kUnsupportedFeature, "iterative section '" + Printable(idstr) + "' (only RAM is supported)");
    }
    if (have_ram_section_) return Fail(StreamError::kBadSectionOrder, "second RAM SECTION_START");
    if (version != kRamSectionVersion) {
      return Fail(StreamError::kUnsupportedFeature, "RAM section version " + std::to_string(version) + " (expected 4)");
    }
    have_ram_section_ = true;
    ram_section_id_ = sid;
    return Status::Ok();
  }
  if (!have_ram_section_)
    return Fail(StreamError::kBadSectionOrder, "section " + std::to_string(sid) + " continued before any SECTION_START");
  if (sid != ram_section_id_) {
    return Fail(StreamError::kUnsupportedFeature, "iterative section " + std::to_string(sid) + " is not the RAM section " +
                                                std::to_string(ram_section_id_));
  }
  return Status::Ok();
}

Status ColoStreamParser::ParseBlockTable(uint64_t total_bytes) {
  if (!blocks_.empty()) return Fail(StreamError::kBadBlockTable, "second RAM block table");
  uint64_t sum = 0;
  while (sum < total_bytes) {
    uint8_t len = 0;
    TANDEM_RETURN_IF_ERROR(reader_->ReadU8(&len));
    if (len == 0) return Fail(StreamError::kBadBlockTable, "RAM block with an empty name");
    std::string name(len, '\0');
    TANDEM_RETURN_IF_ERROR(reader_->Read(name.data(), len));
    uint64_t size = 0;
    TANDEM_RETURN_IF_ERROR(reader_->ReadBe64(&size));
    if (size == 0 || size % kPageSize != 0) {
      return Fail(StreamError::kBadBlockTable,
                  "RAM block '" + Printable(name) + "' size " + Hex(size) + " is not a page multiple");
    }
    for (const auto& b : blocks_) {
      if (b.name == name) return Fail(StreamError::kBadBlockTable, "RAM block '" + Printable(name) + "' listed twice");
    }
    sum += size;
    if (sum > total_bytes) {
      return Fail(StreamError::kBadBlockTable,
                  "RAM block sizes add up to more than the announced " + Hex(total_bytes) + " bytes");
    }
    blocks_.push_back({std::move(name), size});
  }
  if (blocks_.empty()) return Fail(StreamError::kBadBlockTable, "RAM block table is empty");
  return Status::Ok();
}

Status ColoStreamParser::ParseRamRecords(replicator::PageSink* sink, bool allow_block_table, RamSectionStats* stats) {
  for (bool first = true;; first = false) {
    uint64_t header = 0;
    TANDEM_RETURN_IF_ERROR(reader_->ReadBe64(&header));
    const uint64_t flags = header & kFlagMask;
    const uint64_t addr = header & ~kFlagMask;
    if (flags & kFlagMemSize) {
      if (flags != kFlagMemSize || !allow_block_table || !first) {
        return Fail(StreamError::kBadBlockTable,
                    "RAM block table (MEM_SIZE record) outside the start of the RAM section, flags " + Hex(flags));
      }
      TANDEM_RETURN_IF_ERROR(ParseBlockTable(addr));
      continue;
    }
    if (flags == kFlagEos) {
      if (addr != 0) return Fail(StreamError::kBadRamRecord, "RAM EOS record with offset " + Hex(addr));
      return Status::Ok();
    }
    const uint64_t unsupported = flags & (kFlagFull | kFlagXbzrle | kFlagHook | kFlagCompressPage);
    if (unsupported) {
      const char* what = (unsupported & kFlagXbzrle)         ? "XBZRLE"
                         : (unsupported & kFlagCompressPage) ? "COMPRESS_PAGE"
                         : (unsupported & kFlagHook)         ? "HOOK (RDMA)"
                                                             : "FULL (pre-2.0 streams)";
      return Fail(StreamError::kUnsupportedFeature, std::string("RAM record flag ") + what + " in flags " + Hex(flags) +
                                                  " (disable that migration capability)");
    }
    const uint64_t kind = flags & ~kFlagContinue;
    if (kind != kFlagZero && kind != kFlagPage) {
      return Fail(StreamError::kBadRamRecord, "unknown RAM record flags " + Hex(flags));
    }
    int block = last_block_;
    if (!(flags & kFlagContinue)) {
      uint8_t len = 0;
      char name[256];
      TANDEM_RETURN_IF_ERROR(reader_->ReadU8(&len));
      TANDEM_RETURN_IF_ERROR(reader_->Read(name, len));
      const std::string_view idstr(name, len);
      block = -1;
      for (size_t i = 0; i < blocks_.size(); ++i) {
        if (blocks_[i].name == idstr) {
          block = int(i);
          break;
        }
      }
      if (block < 0) return Fail(StreamError::kBadRamRecord, "page for unknown RAM block '" + Printable(idstr) + "'");
      last_block_ = block;
    } else if (block < 0) {
      return Fail(StreamError::kBadRamRecord, "CONTINUE page record with no previous RAM block");
    }
    const replicator::RamBlockInfo& info = blocks_[size_t(block)];
    if (addr >= info.size_bytes) {
      return Fail(StreamError::kBadRamRecord,
                  "page offset " + Hex(addr) + " beyond RAM block '" + info.name + "' of size " + Hex(info.size_bytes));
    }
    if (sink == nullptr) return Fail(StreamError::kBadRamRecord, "page record before the RAM block table");
    if (kind == kFlagZero) {
      uint8_t fill = 0;
      TANDEM_RETURN_IF_ERROR(reader_->ReadU8(&fill));
      if (!sink->FilledPage(uint32_t(block), addr, fill)) {
        return Fail(StreamError::kPageRefused,
                    "page sink refused page " + Hex(addr) + " of RAM block '" + info.name + "'");
      }
      ++stats->filled_pages;
    } else {
      uint8_t* dst = sink->PageBuffer(uint32_t(block), addr);
      if (dst == nullptr) {
        return Fail(StreamError::kPageRefused,
                    "page sink refused page " + Hex(addr) + " of RAM block '" + info.name + "'");
      }
      TANDEM_RETURN_IF_ERROR(reader_->Read(dst, kPageSize));
      ++stats->pages;
    }
  }
}

Status ColoStreamParser::ParsePrecopyBody(const LayoutCallback& on_layout, replicator::VmDescriptor* descriptor,
                                          std::vector<uint8_t>* device_state) {
  uint32_t magic = 0, version = 0;
  TANDEM_RETURN_IF_ERROR(reader_->ReadBe32(&magic));
  if (magic != kFileMagic)
    return Fail(StreamError::kBadMagic, "bad magic " + Hex(magic) + ", not a QEMU migration stream (QEVM)");
  TANDEM_RETURN_IF_ERROR(reader_->ReadBe32(&version));
  if (version != kFileVersion)
    return Fail(StreamError::kUnknownVersion, "unknown migration stream version " + std::to_string(version));

  bool have_config = false, colo = false;
  replicator::PageSink* sink = nullptr;
  precopy_ = RamSectionStats();
  for (;;) {
    uint8_t type = 0;
    TANDEM_RETURN_IF_ERROR(reader_->ReadU8(&type));
    if (type == kSecConfiguration) {
      if (have_config || have_ram_section_)
        return Fail(StreamError::kBadConfiguration, "configuration section out of place");
      TANDEM_RETURN_IF_ERROR(ParseConfiguration(&descriptor->qemu_configuration));
      have_config = true;
    } else if (type == kSecCommand) {
      uint16_t cmd = 0, len = 0;
      TANDEM_RETURN_IF_ERROR(reader_->ReadBe16(&cmd));
      TANDEM_RETURN_IF_ERROR(reader_->ReadBe16(&len));
      if (cmd != kCmdEnableColo) {
        return Fail(StreamError::kUnsupportedFeature,
                    "migration command " + std::to_string(cmd) + " (only ENABLE_COLO is expected)");
      }
      if (len != 0)
        return Fail(StreamError::kBadCommand, "ENABLE_COLO command with a " + std::to_string(len) + "-byte payload");
      colo = true;
    } else if (type == kSecStart || type == kSecPart || type == kSecEnd) {
      if (!have_config) return Fail(StreamError::kBadConfiguration, "configuration section missing");
      bool is_start = false;
      TANDEM_RETURN_IF_ERROR(ParseRamSectionHeader(type, &is_start));
      if (!is_start && blocks_.empty()) return Fail(StreamError::kBadBlockTable, "RAM section without a block table");
      TANDEM_RETURN_IF_ERROR(ParseRamRecords(sink, is_start, &precopy_));
      TANDEM_RETURN_IF_ERROR(ParseFooter());
      if (is_start) {
        if (blocks_.empty()) return Fail(StreamError::kBadBlockTable, "RAM SECTION_START without a block table");
        descriptor->page_size = kPageSize;
        descriptor->ram_blocks = blocks_;
        TANDEM_ASSIGN_OR_RETURN(sink, on_layout(*descriptor));
        if (sink == nullptr) return Status::InvalidArgument("layout callback returned no page sink");
      }
      if (type == kSecEnd) break;
    } else if (type == kSecFull || type == kSecEof) {
      return Fail(StreamError::kBadSectionOrder, "device section or EOF before the RAM section ended");
    } else {
      return Fail(StreamError::kUnknownSectionType, "unknown section type " + Hex(type));
    }
  }
  if (!colo) return Fail(StreamError::kUnsupportedFeature, "not a COLO stream: no ENABLE_COLO command before RAM ended");
  return ParseDeviceTail(device_state, &descriptor->qemu_vmdesc_json);
}

namespace {

struct DeviceId {
  std::string_view name;
  int64_t instance;
};

// Does a FULL section header for `dev` start at blob[pos]?
bool HeaderMatches(std::span<const uint8_t> blob, size_t pos, const DeviceId& dev) {
  if (pos + 6 > blob.size() || blob[pos] != kSecFull) return false;
  const size_t len = blob[pos + 5];
  if (len != dev.name.size() || pos + 6 + len + 8 > blob.size()) return false;
  if (std::memcmp(blob.data() + pos + 6, dev.name.data(), len) != 0) return false;
  return int64_t(LoadBe32(blob.data() + pos + 6 + len)) == dev.instance;
}

// Walks FULL sections of blob[0, end) by their footers, guided by the vmdesc device list: a footer is
// `7e <same sid>` followed by the next expected device's header (or by `end` for the last one).
Status WalkDeviceSections(std::span<const uint8_t> blob, size_t end, const std::vector<DeviceId>& devices) {
  size_t pos = 0;
  for (size_t i = 0; i < devices.size(); ++i) {
    if (!HeaderMatches(blob, pos, devices[i])) {
      return Status::Corruption("device section " + std::to_string(i) + " at byte " + std::to_string(pos) +
                                " is not '" + std::string(devices[i].name) + "' instance " +
                                std::to_string(devices[i].instance) + " as the vmdesc lists");
    }
    const uint32_t sid = LoadBe32(blob.data() + pos + 1);
    size_t q = pos + 6 + devices[i].name.size() + 8;
    bool found = false;
    while (q + 5 <= end) {
      const void* hit = std::memchr(blob.data() + q, kSecFooter, end - q);
      if (hit == nullptr) break;
      q = size_t(static_cast<const uint8_t*>(hit) - blob.data());
      if (q + 5 > end) break;
      if (LoadBe32(blob.data() + q + 1) == sid) {
        const size_t next = q + 5;
        if (i + 1 < devices.size() ? HeaderMatches(blob, next, devices[i + 1]) : next == end) {
          pos = next;
          found = true;
          break;
        }
      }
      ++q;
    }
    if (!found) {
      return Status::Corruption("device section '" + std::string(devices[i].name) + "' (section " +
                                std::to_string(sid) + ") has no footer before the next listed device");
    }
  }
  if (pos != end) return Status::Corruption(std::to_string(end - pos) + " bytes after the last listed device section");
  return Status::Ok();
}

Status DevicesFromVmdesc(const nlohmann::json& vmdesc, std::vector<DeviceId>* devices) {
  if (!vmdesc.is_object() || !vmdesc.contains("devices") || !vmdesc["devices"].is_array()) {
    return Status::Corruption("vmdesc JSON has no devices array");
  }
  for (const auto& d : vmdesc["devices"]) {
    if (!d.is_object() || !d.contains("name") || !d["name"].is_string() || !d.contains("instance_id") ||
        !d["instance_id"].is_number_integer()) {
      return Status::Corruption("vmdesc device entry without name/instance_id");
    }
    const std::string& name = d["name"].get_ref<const std::string&>();
    if (name.empty() || name.size() > 255) return Status::Corruption("vmdesc device name length");
    devices->push_back({name, d["instance_id"].get<int64_t>()});
  }
  return Status::Ok();
}

}  // namespace

Status CheckDeviceSections(std::span<const uint8_t> blob, const std::string& vmdesc_json, StreamError* error) {
  Status st = [&]() -> Status {
    nlohmann::json vmdesc = nlohmann::json::parse(vmdesc_json, nullptr, /*allow_exceptions=*/false);
    if (vmdesc.is_discarded()) return Status::Corruption("vmdesc is not JSON");
    std::vector<DeviceId> devices;
    TANDEM_RETURN_IF_ERROR(DevicesFromVmdesc(vmdesc, &devices));
    if (blob.empty() || blob.back() != kSecEof) return Status::Corruption("device state does not end with EOF (0x00)");
    return WalkDeviceSections(blob, blob.size() - 1, devices);
  }();
  if (error != nullptr) *error = st.ok() ? StreamError::kNone : StreamError::kBadDeviceState;
  return st;
}

Status ColoStreamParser::ParseDeviceTail(std::vector<uint8_t>* tail, std::string* vmdesc_out) {
  // Device sections carry no length, and the primary sends nothing after the precopy until CHECKPOINT_READY:
  // so the precopy ends where `00 06 be32(L) <L bytes of JSON>` ends and the JSON's device list matches a walk
  // of the sections by their footers. Candidates are tried in stream order as their bytes arrive.
  tail->clear();
  std::vector<size_t> candidates;  // positions p of "00 06" whose trailer is not complete yet
  size_t scan = 0;
  for (;;) {
    TANDEM_ASSIGN_OR_RETURN(std::span<const uint8_t> chunk, reader_->TakeAvailable(SIZE_MAX));
    tail->insert(tail->end(), chunk.begin(), chunk.end());
    const std::span<const uint8_t> t(*tail);
    for (; scan + 1 < t.size(); ++scan) {
      if (t[scan] == kSecEof && t[scan + 1] == kSecVmdesc) candidates.push_back(scan);
    }
    for (size_t i = 0; i < candidates.size();) {
      const size_t p = candidates[i];
      if (p + 6 > t.size()) {
        ++i;
        continue;
      }
      const uint32_t len = LoadBe32(t.data() + p + 2);
      const size_t end = p + 6 + size_t(len);
      bool drop = len < 2 || len > kMaxVmdescBytes || (p + 7 <= t.size() && t[p + 6] != '{');
      if (!drop && end <= t.size()) {
        drop = true;
        if (t[end - 1] == '}') {
          nlohmann::json vmdesc = nlohmann::json::parse(
              t.begin() + std::ptrdiff_t(p + 6), t.begin() + std::ptrdiff_t(end), nullptr, /*allow_exceptions=*/false);
          std::vector<DeviceId> devices;
          if (!vmdesc.is_discarded() && DevicesFromVmdesc(vmdesc, &devices).ok() &&
              WalkDeviceSections(t, p, devices).ok()) {
            if (vmdesc.contains("page_size") && vmdesc["page_size"] != kPageSize) {
              return Fail(StreamError::kUnsupportedFeature, "guest page size " + vmdesc["page_size"].dump() + " (only 4096)");
            }
            vmdesc_out->assign(reinterpret_cast<const char*>(t.data() + p + 6), len);
            reader_->Unread(t.size() - end);  // bytes after the precopy (a recording's next message)
            tail->resize(p + 1);              // the sections and their EOF
            return Status::Ok();
          }
        }
      }
      if (drop) {
        candidates.erase(candidates.begin() + std::ptrdiff_t(i));
      } else {
        ++i;
      }
    }
    if (tail->size() > kMaxDeviceStateBytes) {
      return Fail(StreamError::kBadDeviceState,
                  "no valid EOF + VMDESCRIPTION trailer within 256 MiB after the RAM sections");
    }
  }
}

Status ColoStreamParser::ParseCheckpointBody(replicator::PageSink* sink, std::vector<uint8_t>* device_state) {
  if (blocks_.empty()) return Status::InvalidArgument("checkpoint before the precopy was parsed");
  last_checkpoint_ = RamSectionStats();
  uint8_t type = 0;
  TANDEM_RETURN_IF_ERROR(reader_->ReadU8(&type));
  if (type != kSecEnd)
    return Fail(StreamError::kBadSectionOrder, "checkpoint does not start with the RAM SECTION_END, got " + Hex(type));
  bool is_start = false;
  TANDEM_RETURN_IF_ERROR(ParseRamSectionHeader(type, &is_start));
  TANDEM_RETURN_IF_ERROR(ParseRamRecords(sink, /*allow_block_table=*/false, &last_checkpoint_));
  TANDEM_RETURN_IF_ERROR(ParseFooter());
  TANDEM_RETURN_IF_ERROR(reader_->ReadU8(&type));
  if (type != kSecEof)
    return Fail(StreamError::kBadSectionOrder, "expected EOF after the checkpoint's RAM section, got " + Hex(type));
  TANDEM_RETURN_IF_ERROR(ExpectMessageBody(ColoMessage::kVmstateSize));
  uint64_t size = 0;
  TANDEM_RETURN_IF_ERROR(reader_->ReadBe64(&size));
  if (size < 1 || size > kMaxDeviceStateBytes) {
    return Fail(StreamError::kBadDeviceState, "device state size " + std::to_string(size) + " out of range");
  }
  device_state->resize(size_t(size));
  TANDEM_RETURN_IF_ERROR(reader_->Read(device_state->data(), size_t(size)));
  if (device_state->back() != kSecEof || (size > 1 && (*device_state)[0] != kSecFull)) {
    return Fail(StreamError::kBadDeviceState, "device state blob is not FULL sections followed by EOF");
  }
  return Status::Ok();
}

}  // namespace tandem::qemu
