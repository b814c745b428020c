#include "config/config.h"

#include <algorithm>
#include <functional>
#include <initializer_list>
#include <map>
#include <toml++/toml.h>

#include "common/env.h"
#include "common/key_file.h"
#include "metrics/server.h"
#include "output-commit/qemu_options.h"
#include "qemu-integration/qemu_args.h"

namespace tandem::config {
namespace {

// How one key's TOML value becomes Config fields. An InvalidArgument says what is allowed; the caller prefixes
// file:line:col and the key.
using Setter = std::function<Status(Config&, const toml::node&)>;

const char* TypeName(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    default: return "nothing";
  }
}

Status Expected(std::string_view what, const toml::node& got) {
  return Status::InvalidArgument("expected " + std::string(what) + ", not " + TypeName(got));
}

Setter String(std::string Config::*field) {
  return [field](Config& c, const toml::node& n) -> Status {
    const auto* s = n.as_string();
    if (s == nullptr) return Expected("a string", n);
    c.*field = s->get();
    return Status::Ok();
  };
}

// A string from a fixed set of words, kept as the word.
Setter Word(std::string Config::*field, std::initializer_list<const char*> allowed) {
  std::vector<std::string> words(allowed.begin(), allowed.end());
  return [field, words](Config& c, const toml::node& n) -> Status {
    const auto* s = n.as_string();
    if (s != nullptr && std::find(words.begin(), words.end(), s->get()) != words.end()) {
      c.*field = s->get();
      return Status::Ok();
    }
    std::string list;
    for (const std::string& w : words) list += (list.empty() ? "\"" : ", \"") + w + "\"";
    return s == nullptr ? Expected("one of " + list, n)
                        : Status::InvalidArgument("must be one of " + list + ", not \"" + s->get() + "\"");
  };
}

Setter Strings(std::vector<std::string> Config::*field) {
  return [field](Config& c, const toml::node& n) -> Status {
    const toml::array* a = n.as_array();
    if (a == nullptr) return Expected("an array of strings", n);
    std::vector<std::string> items;
    for (size_t i = 0; i < a->size(); ++i) {
      const auto* s = (*a)[i].as_string();
      if (s == nullptr) return Expected("an array of strings", (*a)[i]).WithContext("item " + std::to_string(i + 1));
      items.push_back(s->get());
    }
    c.*field = std::move(items);
    return Status::Ok();
  };
}

Setter Boolean(bool Config::*field) {
  return [field](Config& c, const toml::node& n) -> Status {
    const auto* b = n.as_boolean();
    if (b == nullptr) return Expected("true or false", n);
    c.*field = b->get();
    return Status::Ok();
  };
}

// An integer within [min, max]; `unit` (ms, MiB, ...) goes into the error so the operator sees the scale.
template <typename Int>
Setter Integer(Int Config::*field, int64_t min, int64_t max, const char* unit) {
  return [field, min, max, unit](Config& c, const toml::node& n) -> Status {
    const auto* v = n.as_integer();
    const std::string range = "[" + std::to_string(min) + ", " + std::to_string(max) + "]" +
                              (*unit != '\0' ? " " + std::string(unit) : "");
    if (v == nullptr) return Expected("an integer in " + range, n);
    if (v->get() < min || v->get() > max) {
      return Status::InvalidArgument(std::to_string(v->get()) + " is out of range " + range);
    }
    c.*field = static_cast<Int>(v->get());
    return Status::Ok();
  };
}

// A number (integer or float) within (min, max].
Setter Number(double Config::*field, double min, double max, const char* unit) {
  return [field, min, max, unit](Config& c, const toml::node& n) -> Status {
    const std::optional<double> v = n.value<double>();
    const std::string range = "(" + std::to_string(int64_t(min)) + ", " + std::to_string(int64_t(max)) + "] " + unit;
    if (!v.has_value() || !(n.is_integer() || n.is_floating_point())) return Expected("a number in " + range, n);
    if (!(*v > min && *v <= max)) return Status::InvalidArgument(std::to_string(*v) + " is out of range " + range);
    c.*field = *v;
    return Status::Ok();
  };
}

Status SetEpochMs(Config& c, const toml::node& n) {
  if (const auto* s = n.as_string(); s != nullptr && s->get() == "auto") {
    c.epoch_auto = true;
    return Status::Ok();
  }
  if (!n.is_integer()) return Expected("an integer in [1, 60000] ms or \"auto\"", n);
  return Integer(&Config::epoch_ms, 1, 60000, "ms")(c, n);
}

// A word from a fixed set, parsed once here: the roles get the typed value and a bad one stops the load.
template <typename T>
Setter OneOf(T Config::*field, Result<T> (*parse)(std::string_view), const char* allowed) {
  return [field, parse, allowed](Config& c, const toml::node& n) -> Status {
    const auto* s = n.as_string();
    if (s == nullptr) return Expected(allowed, n);
    Result<T> parsed = parse(s->get());
    if (!parsed.ok()) return Status::InvalidArgument("must be " + std::string(allowed) + ", not \"" + s->get() + "\"");
    c.*field = parsed.value();
    return Status::Ok();
  };
}

Result<bool> ParseGuestCrashAction(std::string_view v) {  // true: reset
  if (v == "report" || v == "reset") return v == "reset";
  return Status::InvalidArgument(std::string(v));
}

Result<bool> ParseWhenUnprotected(std::string_view v) {  // true: release
  if (v == "release" || v == "hold") return v == "release";
  return Status::InvalidArgument(std::string(v));
}

Result<replicator::Compression> ParseCompression(std::string_view v) {  // "auto" is lz4 + compression_auto
  if (v == "auto" || v == "lz4") return replicator::Compression::kLz4;
  if (v == "zstd") return replicator::Compression::kZstd;
  if (v == "none") return replicator::Compression::kNone;
  return Status::InvalidArgument(std::string(v));
}

Status SetCompression(Config& c, const toml::node& n) {
  TANDEM_RETURN_IF_ERROR(OneOf(&Config::compression, ParseCompression, "\"auto\", \"lz4\", \"zstd\" or \"none\"")(c, n));
  c.compression_auto = n.as_string()->get() == "auto";
  return Status::Ok();
}

// A TCP "host:port" with a literal host (or none: every address) and a fixed port.
Setter MetricsAddress(std::string Config::*field) {
  return [field](Config& c, const toml::node& n) -> Status {
    const auto* s = n.as_string();
    if (s == nullptr) return Expected("a string \"host:port\"", n);
    TANDEM_RETURN_IF_ERROR(metrics::CheckMetricsAddress(s->get()));
    c.*field = s->get();
    return Status::Ok();
  };
}

// A key from a file only tandem's user can read, at least 16 bytes (common/key_file.h).
Setter KeyFile(std::string Config::*field) {
  return [field](Config& c, const toml::node& n) -> Status {
    const auto* path = n.as_string();
    if (path == nullptr) return Expected("a string (the key file's path)", n);
    TANDEM_ASSIGN_OR_RETURN(c.*field, ReadKeyFile(path->get()));
    return Status::Ok();
  };
}

struct KeySpec {
  const char* table;
  const char* key;
  Setter set;
};

// Every key of the file. Adding a key is one line here plus its field in Config (config.h) and its documentation
// (default, unit, meaning) in tandem.example.toml — config_test fails while a key here is missing there. A new
// table comes with its first key; if its mere presence means something (like [nic]), add it to kPresence too.
// Defaults are Config's member initializers; the units are the ones in the key names and in Integer's last
// argument (which the range error repeats).
const std::vector<KeySpec>& Keys() {
  static const std::vector<KeySpec> keys = {
      {"vm", "name", String(&Config::vm_name)},
      {"vm", "memory_mb", Integer(&Config::memory_mb, 16, 1 << 20, "MiB")},
      {"vm", "vcpus", Integer(&Config::vcpus, 1, 256, "")},
      {"vm", "accel", Word(&Config::accel, {"kvm", "tcg"})},
      {"vm", "machine", String(&Config::machine)},
      {"vm", "kernel", String(&Config::kernel)},
      {"vm", "initrd", String(&Config::initrd)},
      {"vm", "append", String(&Config::append)},
      {"vm", "epoch_ms", SetEpochMs},
      {"epoch", "min_ms", Integer(&Config::epoch_min_ms, 1, 60000, "ms")},
      {"epoch", "max_ms", Integer(&Config::epoch_max_ms, 1, 60000, "ms")},
      {"epoch", "max_paused_percent", Number(&Config::epoch_max_paused_percent, 0, 100, "%")},
      {"epoch", "max_output_latency_ms", Integer(&Config::epoch_max_output_latency_ms, 0, 600000, "ms")},
      {"epoch", "max_link_mib_s", Integer(&Config::epoch_max_link_mib_s, 0, 1 << 20, "MiB/s")},
      {"vm", "qemu_extra", Strings(&Config::qemu_extra)},
      {"vm", "on_guest_crash", OneOf(&Config::reset_guest_on_crash, ParseGuestCrashAction, "\"report\" or \"reset\"")},
      {"vm", "memory_dir", String(&Config::memory_dir)},
      {"vm", "allow_unprotected_devices", Boolean(&Config::allow_unprotected_devices)},
      {"nic", "mac", String(&Config::nic_mac)},
      {"nic", "tap", String(&Config::nic_tap)},
      {"nic", "bridge", String(&Config::nic_bridge)},
      {"nic", "model", String(&Config::nic_model)},
      {"nic", "hold_max_kib", Integer(&Config::nic_hold_max_kib, 64, 1 << 20, "KiB")},
      {"nic", "hold_max_frames", Integer(&Config::nic_hold_max_frames, 1, 1 << 20, "frames")},
      {"disk", "image", String(&Config::disk_image)},
      {"disk", "format", String(&Config::disk_format)},
      {"disk", "max_epoch_mib", Integer(&Config::disk_max_epoch_mib, 64, 1 << 16, "MiB")},
      {"nic", "when_unprotected", OneOf(&Config::release_when_unprotected, ParseWhenUnprotected, "\"release\" or \"hold\"")},
      {"libvirt", "uri", String(&Config::libvirt_uri)},
      {"libvirt", "domain", String(&Config::libvirt_domain)},
      {"primary", "state_dir", String(&Config::primary_state_dir)},
      {"primary", "replication", String(&Config::primary_replication)},
      {"primary", "heartbeat", Strings(&Config::primary_heartbeat)},
      {"standby", "state_dir", String(&Config::standby_state_dir)},
      {"standby", "replication", String(&Config::standby_replication)},
      {"standby", "heartbeat", Strings(&Config::standby_heartbeat)},
      {"heartbeat", "interval_ms", Integer(&Config::heartbeat_interval_ms, 1, 10000, "ms")},
      {"heartbeat", "timeout_ms", Integer(&Config::heartbeat_timeout_ms, 2, 600000, "ms")},
      {"heartbeat", "psk", String(&Config::psk)},
      {"heartbeat", "psk_file", KeyFile(&Config::psk)},
      {"replication", "psk", String(&Config::replication_psk)},
      {"replication", "psk_file", KeyFile(&Config::replication_psk)},
      {"replication", "encryption",
       OneOf(&Config::link_encryption, replicator::ParseLinkEncryption, "\"aes-gcm\" or \"none\"")},
      {"replication", "max_in_flight", Integer(&Config::max_in_flight, 1, 64, "epochs")},
      {"replication", "io_timeout_ms", Integer(&Config::io_timeout_ms, 10, 600000, "ms")},
      {"replication", "io_engine",
       OneOf(&Config::io_engine, replicator::ParseIoEngine, "\"auto\", \"io_uring\" or \"epoll\"")},
      {"replication", "encode_threads", Integer(&Config::encode_threads, 1, 64, "threads")},
      {"replication", "apply_threads", Integer(&Config::apply_threads, 1, 64, "threads")},
      {"replication", "delta_base_mib", Integer(&Config::delta_base_mib, 0, 1 << 20, "MiB")},
      {"replication", "compression", SetCompression},
      {"replication", "lz4_acceleration", Integer(&Config::lz4_acceleration, 1, 65537, "")},
      {"replication", "zstd_level", Integer(&Config::zstd_level, 1, 19, "")},
      {"witness", "address", String(&Config::witness_address)},
      {"witness", "listen", String(&Config::witness_listen)},
      {"witness", "state_dir", String(&Config::witness_state_dir)},
      {"witness", "lease_ms", Integer(&Config::lease_ms, 10, 600000, "ms")},
      {"witness", "promise_ms", Integer(&Config::promise_ms, 2, 600000, "ms")},
      {"witness", "two_host_policy",
       OneOf(&Config::two_host_policy, heartbeat::ParseTwoHostPolicy,
             "\"never-promote\", \"standby-promotes\" or \"standby-promotes-fenced\"")},
      {"metrics", "address", MetricsAddress(&Config::metrics_address)},
      {"metrics", "primary_address", MetricsAddress(&Config::metrics_primary_address)},
      {"metrics", "standby_address", MetricsAddress(&Config::metrics_standby_address)},
      {"debug", "die_mid_epoch", Integer(&Config::debug_die_mid_epoch, 0, INT64_MAX, "epoch")},
      {"debug", "corrupt_epoch", Integer(&Config::debug_corrupt_epoch, 0, INT64_MAX, "epoch")},
  };
  return keys;
}

// Keys of earlier versions, refused with what replaced them (not silently ignored, not "unknown").
const std::map<std::string_view, const char*> kRemoved = {
    {"standby.replica_dir",
     "replaced by [vm] memory_dir: a private directory tandem creates for the RAM file and the replica (default "
     "/dev/shm/tandem; /dev/shm itself is open to everyone and refused)"},
};

// Tables whose presence alone switches something on (an empty [nic] is a NIC missing its mac, not no NIC).
const std::map<std::string_view, bool Config::*> kPresence = {{"nic", &Config::nic}, {"disk", &Config::disk}};

std::vector<std::string> TableNames() {
  std::vector<std::string> names;
  for (const KeySpec& k : Keys()) {
    if (std::find(names.begin(), names.end(), k.table) == names.end()) names.push_back(k.table);
  }
  return names;
}

// "file:line:col" (or just "file" when the position is unknown: a key that is absent).
std::string Where(const std::string& source, const toml::source_position& at) {
  if (at.line == 0) return source;
  return source + ":" + std::to_string(at.line) + ":" + std::to_string(at.column);
}

// A whole-config check's error, at the key it names when the file sets it.
class Positions {
 public:
  explicit Positions(std::string source) : source_(std::move(source)) {}
  void Set(const std::string& key, toml::source_position at) { at_[key] = at; }
  // The first key the file sets in `table`, or "".
  std::string FirstKeyIn(const std::string& table) const {
    auto it = at_.lower_bound(table + ".");
    return it != at_.end() && it->first.rfind(table + ".", 0) == 0 ? it->first : "";
  }
  Status Refuse(const std::string& key, const std::string& message) const {
    auto it = at_.find(key);
    return Status::InvalidArgument(Where(source_, it == at_.end() ? toml::source_position{} : it->second) + ": " +
                                   message);
  }

 private:
  std::string source_;
  std::map<std::string, toml::source_position> at_;
};

Status CheckQemuExtra(Config* c, const Positions& at) {
  c->unprotected_devices = qemu::UnprotectedDevices(c->qemu_extra);
  if (c->unprotected_devices.empty() || c->allow_unprotected_devices) return Status::Ok();
  return at.Refuse("vm.qemu_extra",
                   "vm.qemu_extra adds " + c->unprotected_devices.front() +
                       ". Its output or state would escape the protection (seen before the standby has it, or lost "
                       "at failover). Remove it, or set [vm] allow_unprotected_devices = true to run it unprotected");
}

Status ValidateNic(const Config& c, const Positions& at) {
  if (!c.nic) return Status::Ok();
  if (c.nic_mac.empty()) return at.Refuse("nic.mac", "nic.mac is required in a [nic] table");
  if (c.nic_tap.empty() || c.nic_tap.size() >= 16 || c.nic_tap.find_first_of("/ \t") != std::string::npos) {
    return at.Refuse("nic.tap", "nic.tap must be a host interface name (1..15 characters, no '/' or spaces)");
  }
  if (c.nic_bridge.size() >= 16) return at.Refuse("nic.bridge", "nic.bridge is longer than 15 characters");
  for (const std::string* dir : {&c.primary_state_dir, &c.standby_state_dir}) {
    auto args = output_commit::QemuNicArgs({c.nic_mac, c.nic_model}, *dir);
    if (!args.ok()) return at.Refuse("nic.mac", "[nic]: " + args.status().message());
  }
  return Status::Ok();
}

Status ValidateDisk(const Config& c, const Positions& at) {
  if (!c.disk) return Status::Ok();
  if (c.disk_image.empty()) {
    return at.Refuse("disk.image", "disk.image (the path of a raw image; relative: in the role's state_dir) is "
                                   "required in a [disk] section");
  }
  if (c.disk_format != "raw") {
    return at.Refuse("disk.format", "disk.format '" + c.disk_format +
                                   "': only raw images are served (convert: qemu-img convert -O raw in.qcow2 out.raw)");
  }
  for (const std::string* dir : {&c.primary_state_dir, &c.standby_state_dir}) {
    if (dir->size() + sizeof("/disk.sock") - 1 > 107 || dir->find(',') != std::string::npos) {
      return at.Refuse("disk.image", "[disk]: state_dir " + *dir + " is too long or has a comma for the disk socket");
    }
  }
  return Status::Ok();
}

// What no single key can check: required keys and keys that must agree.
Status Validate(const Config& c, const Positions& at) {
  if (c.vm_name.empty() || c.vm_name.find_first_of("/ \t") != std::string::npos) {
    return at.Refuse("vm.name", "vm.name must be a non-empty word without '/' or spaces");
  }
  if (c.kernel.empty()) return at.Refuse("vm.kernel", "vm.kernel is required");
  if (c.memory_dir.empty() || c.memory_dir.front() != '/') {
    return at.Refuse("vm.memory_dir", "vm.memory_dir must be an absolute path");
  }
  for (const char* key : {"primary.state_dir", "standby.state_dir"}) {
    const std::string& dir = key[0] == 'p' ? c.primary_state_dir : c.standby_state_dir;
    auto console = output_commit::QemuConsoleArgs(dir);
    if (!console.ok()) return at.Refuse(key, std::string(key) + " " + dir + ": " + console.status().message());
  }
  if (const std::string key = at.FirstKeyIn("epoch"); !key.empty() && !c.epoch_auto) {
    return at.Refuse(key, key + " is a limit of epoch_ms = \"auto\": set [vm] epoch_ms = \"auto\", or remove it "
                          "to keep the fixed interval");
  }
  if (c.epoch_min_ms > c.epoch_max_ms) return at.Refuse("epoch.min_ms", "epoch.min_ms is larger than epoch.max_ms");
  TANDEM_RETURN_IF_ERROR(ValidateNic(c, at));
  TANDEM_RETURN_IF_ERROR(ValidateDisk(c, at));
  if (c.Libvirt() && c.libvirt_uri.empty()) return at.Refuse("libvirt.uri", "libvirt.uri is empty");
  if (c.primary_heartbeat.empty() || c.primary_heartbeat.size() != c.standby_heartbeat.size()) {
    return at.Refuse("standby.heartbeat",
                     "primary.heartbeat and standby.heartbeat must list the same number (>= 1) of link addresses");
  }
  if (c.Reprotects()) {
    // The roles swap hosts with every failover, so the witness must say which host lost its term, and the two
    // hosts need their own state.
    if (!c.HasWitness()) {
      return at.Refuse("primary.replication", "primary.replication (automatic re-protection) needs a [witness]: "
                                              "only the witness can tell a returning host that it lost its term");
    }
    if (c.primary_replication == c.standby_replication) {
      return at.Refuse("primary.replication", "primary.replication must differ from standby.replication");
    }
    if (c.disk) {
      return at.Refuse("primary.replication", "primary.replication (automatic re-protection) is not supported with "
                                              "a [disk] yet: re-protect such a VM by hand (README, \"Re-protection\")");
    }
  }
  if (c.psk.empty()) return at.Refuse("heartbeat.psk", "heartbeat.psk or heartbeat.psk_file is required");
  if (Status st = CheckKeyLength(c.psk, "the heartbeat key (heartbeat.psk or heartbeat.psk_file)"); !st.ok()) {
    return at.Refuse("heartbeat.psk", st.message());
  }
  if (Status st = CheckKeyLength(c.replication_psk, "the replication key (replication.psk or psk_file)");
      !c.replication_psk.empty() && !st.ok()) {
    return at.Refuse("replication.psk", st.message());
  }
  if (c.heartbeat_timeout_ms <= c.heartbeat_interval_ms) {
    return at.Refuse("heartbeat.timeout_ms", "heartbeat.timeout_ms must be larger than heartbeat.interval_ms");
  }
  if (c.lease_ms <= c.heartbeat_interval_ms * 2) {
    return at.Refuse("witness.lease_ms",
                     "witness.lease_ms must be more than twice heartbeat.interval_ms (renewals)");
  }
  return Status::Ok();
}

// The INI format tandem read before TOML fails as TOML mostly on unquoted strings and lists, and ';' comments.
bool LooksLikeIni(std::string_view line) {
  const size_t first = line.find_first_not_of(" \t");
  if (first == std::string_view::npos) return false;
  const size_t semicolon = line.find(';');
  if (semicolon != std::string_view::npos && line.find_first_of("\"'") > semicolon) return true;  // "; comment"
  const size_t eq = line.find('=');
  if (eq == std::string_view::npos) return false;
  const size_t v = line.find_first_not_of(" \t\r", eq + 1);
  if (v == std::string_view::npos || line[v] == '#' || line[v] == ';') return true;  // "qemu_extra =" (empty)
  const std::string_view value = line.substr(v);
  if (std::string_view("\"'[{+-0123456789").find(value[0]) != std::string_view::npos) return false;
  for (std::string_view literal : {"true", "false", "inf", "nan"}) {
    if (value.substr(0, literal.size()) == literal &&
        (value.size() == literal.size() || std::string_view(" \t\r#,]}").find(value[literal.size()]) !=
                                               std::string_view::npos)) {
      return false;
    }
  }
  return true;
}

std::string_view LineOf(std::string_view text, size_t line) {
  size_t start = 0;
  for (size_t n = 1; n < line && start != std::string_view::npos; ++n) {
    start = text.find('\n', start);
    if (start != std::string_view::npos) ++start;
  }
  if (start == std::string_view::npos || start > text.size()) return {};
  return text.substr(start, text.find('\n', start) - start);
}

std::string List(const std::vector<std::string>& items, const char* before, const char* after) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ", ") + (before + item + after);
  return out;
}

// Applies every key of `doc`; the errors (all of them, in file order) go to `errors`.
void ApplyTables(const toml::table& doc, const std::string& source, Config* config, Positions* positions,
                 std::vector<std::pair<toml::source_position, std::string>>* errors) {
  for (const auto& [table_key, table_node] : doc) {
    const std::string table(table_key.str());
    const toml::source_position table_at =
        table_key.source().begin.line != 0 ? table_key.source().begin : table_node.source().begin;
    const std::vector<std::string> tables = TableNames();
    if (!table_node.is_table()) {
      errors->push_back({table_at, Where(source, table_at) + ": '" + table + "' outside any table; every key " +
                                       "belongs in one of " + List(tables, "[", "]")});
      continue;
    }
    if (std::find(tables.begin(), tables.end(), table) == tables.end()) {
      errors->push_back({table_at, Where(source, table_at) + ": unknown table [" + table + "]; the tables are " +
                                       List(tables, "[", "]")});
      continue;
    }
    if (auto flag = kPresence.find(table); flag != kPresence.end()) config->*(flag->second) = true;
    for (const auto& [key, node] : *table_node.as_table()) {
      const std::string name = table + "." + std::string(key.str());
      const toml::source_position key_at = key.source().begin.line != 0 ? key.source().begin : node.source().begin;
      auto spec = std::find_if(Keys().begin(), Keys().end(),
                               [&](const KeySpec& k) { return k.table == table && k.key == key.str(); });
      if (auto removed = kRemoved.find(name); removed != kRemoved.end()) {
        errors->push_back({key_at, Where(source, key_at) + ": " + name + ": " + removed->second});
        continue;
      }
      if (spec == Keys().end()) {
        std::vector<std::string> known;
        for (const KeySpec& k : Keys()) {
          if (k.table == table) known.push_back(k.key);
        }
        errors->push_back({key_at, Where(source, key_at) + ": unknown key " + name + "; the keys of [" + table +
                                       "] are " + List(known, "", "")});
        continue;
      }
      positions->Set(name, key_at);
      if (Status st = spec->set(*config, node); !st.ok()) {
        errors->push_back({node.source().begin, Where(source, node.source().begin) + ": " + name + ": " +
                                                    st.message()});
      }
    }
  }
}

}  // namespace

std::vector<std::string> ConfigKeyNames() {
  std::vector<std::string> names;
  for (const KeySpec& k : Keys()) names.push_back(std::string(k.table) + "." + k.key);
  return names;
}

Result<Config> ParseConfig(const std::string& text, const std::string& source) {
  toml::table doc;
  try {
    doc = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    const toml::source_position at = e.source().begin;
    std::string note;
    if (LooksLikeIni(LineOf(text, at.line))) {
      note = " (this looks like the INI format tandem used to read; the file is TOML now: quote strings "
             "(name = \"web1\"), lists are arrays (heartbeat = [\"10.0.0.1:7101\", \"10.1.0.1:7101\"], "
             "qemu_extra = [\"-rtc\", \"base=utc\"]), comments start with '#'; see tandem.example.toml)";
    }
    return Status::InvalidArgument(Where(source, at) + ": " + std::string(e.description()) + note);
  }
  Config config;
  Positions positions(source);
  std::vector<std::pair<toml::source_position, std::string>> errors;
  ApplyTables(doc, source, &config, &positions, &errors);
  if (!errors.empty()) {
    std::sort(errors.begin(), errors.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::string message;
    for (const auto& error : errors) message += (message.empty() ? "" : "\n") + error.second;
    return Status::InvalidArgument(message);
  }
  TANDEM_RETURN_IF_ERROR(Validate(config, positions));
  TANDEM_RETURN_IF_ERROR(CheckQemuExtra(&config, positions));
  return config;
}

Result<Config> LoadConfig(const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(std::string text, Env::Default()->ReadFile(path));
  return ParseConfig(text, path);
}

}  // namespace tandem::config
