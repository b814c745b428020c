#include "cli/config.h"

#include <functional>

#include "common/env.h"
#include "common/ini.h"
#include "output-commit/qemu_options.h"
#include "qemu-integration/qemu_args.h"

namespace tandem::cli {
namespace {

using Setter = std::function<Status(Config&, const std::string&)>;

Setter Str(std::string Config::*field) {
  return [field](Config& c, const std::string& v) { c.*field = v; return Status::Ok(); };
}
Setter List(std::vector<std::string> Config::*field, char sep) {
  return [field, sep](Config& c, const std::string& v) { c.*field = SplitList(v, sep); return Status::Ok(); };
}
template <typename Int>
Setter Num(Int Config::*field, Int min, Int max) {
  return [field, min, max](Config& c, const std::string& v) { return ParseBoundedInt(v, min, max, &(c.*field)); };
}

// A word from a fixed set, parsed once here: the roles get the typed value and a bad one stops the load.
template <typename T>
Setter Enum(T Config::*field, Result<T> (*parse)(std::string_view), const char* allowed) {
  return [field, parse, allowed](Config& c, const std::string& v) {
    Result<T> parsed = parse(v);
    if (!parsed.ok()) return Status::InvalidArgument("must be " + std::string(allowed) + ", not '" + v + "'");
    c.*field = parsed.value();
    return Status::Ok();
  };
}

Result<bool> ParseGuestCrashAction(std::string_view v) {  // true: reset
  if (v == "report" || v == "reset") return v == "reset";
  return Status::InvalidArgument(std::string(v));
}

Result<bool> ParseBool(std::string_view v) {
  if (v == "true" || v == "false") return v == "true";
  return Status::InvalidArgument(std::string(v));
}

Result<bool> ParseWhenUnprotected(std::string_view v) {  // true: release
  if (v == "release" || v == "hold") return v == "release";
  return Status::InvalidArgument(std::string(v));
}

// Any [nic] key makes the section present.
Setter Nic(Setter set) {
  return [set](Config& c, const std::string& v) {
    c.nic = true;
    return set(c, v);
  };
}

// Any [disk] key makes the section present.
Setter Disk(Setter set) {
  return [set](Config& c, const std::string& v) {
    c.disk = true;
    return set(c, v);
  };
}

Status SetCompression(Config& c, const std::string& v) {
  c.compression_auto = v == "auto";
  if (v == "auto" || v == "lz4") {
    c.compression = replicator::Compression::kLz4;
  } else if (v == "zstd") {
    c.compression = replicator::Compression::kZstd;
  } else if (v == "none") {
    c.compression = replicator::Compression::kNone;
  } else {
    return Status::InvalidArgument("must be auto, lz4, zstd or none, not '" + v + "'");
  }
  return Status::Ok();
}

const std::map<std::string, Setter>& Setters() {
  static const std::map<std::string, Setter> setters = {
      {"vm.name", Str(&Config::vm_name)},
      {"vm.memory_mb", Num<uint64_t>(&Config::memory_mb, 16, 1 << 20)},
      {"vm.vcpus", Num<int>(&Config::vcpus, 1, 256)},
      {"vm.accel", Str(&Config::accel)},
      {"vm.machine", Str(&Config::machine)},
      {"vm.kernel", Str(&Config::kernel)},
      {"vm.initrd", Str(&Config::initrd)},
      {"vm.append", Str(&Config::append)},
      {"vm.epoch_ms", Num<int>(&Config::epoch_ms, 1, 60000)},
      {"vm.qemu_extra", List(&Config::qemu_extra, ' ')},
      {"vm.on_guest_crash", Enum(&Config::reset_guest_on_crash, ParseGuestCrashAction, "report or reset")},
      {"primary.state_dir", Str(&Config::primary_state_dir)},
      {"primary.heartbeat", List(&Config::primary_heartbeat, ',')},
      {"standby.state_dir", Str(&Config::standby_state_dir)},
      {"standby.replication", Str(&Config::standby_replication)},
      {"standby.replica_dir",
       [](Config&, const std::string&) -> Status {
         return Status::InvalidArgument(
             "replaced by [vm] memory_dir: a private directory tandem creates for the RAM file and the replica "
             "(default /dev/shm/tandem; /dev/shm itself is open to everyone and refused)");
       }},
      {"vm.memory_dir", Str(&Config::memory_dir)},
      {"vm.allow_unprotected_devices", Enum(&Config::allow_unprotected_devices, ParseBool, "true or false")},
      {"nic.mac", Nic(Str(&Config::nic_mac))},
      {"nic.tap", Nic(Str(&Config::nic_tap))},
      {"nic.bridge", Nic(Str(&Config::nic_bridge))},
      {"nic.model", Nic(Str(&Config::nic_model))},
      {"nic.hold_max_kib", Nic(Num<uint64_t>(&Config::nic_hold_max_kib, 64, 1 << 20))},
      {"nic.hold_max_frames", Nic(Num<uint64_t>(&Config::nic_hold_max_frames, 1, 1 << 20))},
      {"disk.image", Disk(Str(&Config::disk_image))},
      {"disk.format", Disk(Str(&Config::disk_format))},
      {"disk.max_epoch_mib", Disk(Num<uint64_t>(&Config::disk_max_epoch_mib, 64, 1 << 16))},
      {"nic.when_unprotected",
       Nic(Enum(&Config::release_when_unprotected, ParseWhenUnprotected, "release or hold"))},
      {"standby.heartbeat", List(&Config::standby_heartbeat, ',')},
      {"heartbeat.interval_ms", Num<int>(&Config::heartbeat_interval_ms, 1, 10000)},
      {"heartbeat.timeout_ms", Num<int>(&Config::heartbeat_timeout_ms, 2, 600000)},
      {"heartbeat.psk", Str(&Config::psk)},
      {"heartbeat.psk_file",
       [](Config& c, const std::string& path) -> Status {
         TANDEM_ASSIGN_OR_RETURN(std::string key, Env::Default()->ReadFile(path));
         c.psk = TrimSpace(key);
         return Status::Ok();
       }},
      {"replication.max_in_flight", Num<int>(&Config::max_in_flight, 1, 64)},
      {"replication.io_timeout_ms", Num<int>(&Config::io_timeout_ms, 10, 600000)},
      {"replication.io_engine", Enum(&Config::io_engine, replicator::ParseIoEngine, "auto, io_uring or epoll")},
      {"replication.encode_threads", Num<int>(&Config::encode_threads, 1, 64)},
      {"replication.apply_threads", Num<int>(&Config::apply_threads, 1, 64)},
      {"replication.delta_base_mib", Num<uint64_t>(&Config::delta_base_mib, 0, 1 << 20)},
      {"replication.compression", SetCompression},
      {"replication.lz4_acceleration", Num<int>(&Config::lz4_acceleration, 1, 65537)},
      {"replication.zstd_level", Num<int>(&Config::zstd_level, 1, 19)},
      {"witness.address", Str(&Config::witness_address)},
      {"witness.listen", Str(&Config::witness_listen)},
      {"witness.state_dir", Str(&Config::witness_state_dir)},
      {"witness.lease_ms", Num<int>(&Config::lease_ms, 10, 600000)},
      {"witness.promise_ms", Num<int>(&Config::promise_ms, 2, 600000)},
      {"witness.two_host_policy",
       Enum(&Config::two_host_policy, heartbeat::ParseTwoHostPolicy,
            "never-promote, standby-promotes or standby-promotes-fenced")},
      {"debug.die_mid_epoch", Num<uint64_t>(&Config::debug_die_mid_epoch, 0, UINT64_MAX)},
      {"debug.corrupt_epoch", Num<uint64_t>(&Config::debug_corrupt_epoch, 0, UINT64_MAX)},
  };
  return setters;
}

Status CheckQemuExtra(Config* c) {
  c->unprotected_devices = qemu::UnprotectedDevices(c->qemu_extra);
  if (c->unprotected_devices.empty() || c->allow_unprotected_devices) return Status::Ok();
  return Status::InvalidArgument(
      "vm.qemu_extra adds " + c->unprotected_devices.front() +
      ". Its output or state would escape the protection (seen before the standby has it, or lost at failover). "
      "Remove it, or set [vm] allow_unprotected_devices = true to run it unprotected");
}

Status ValidateNic(const Config& c) {
  if (!c.nic) return Status::Ok();
  if (c.nic_mac.empty()) return Status::InvalidArgument("nic.mac is required in a [nic] section");
  if (c.nic_tap.empty() || c.nic_tap.size() >= 16 || c.nic_tap.find_first_of("/ \t") != std::string::npos) {
    return Status::InvalidArgument("nic.tap must be a host interface name (1..15 characters, no '/' or spaces)");
  }
  if (c.nic_bridge.size() >= 16) return Status::InvalidArgument("nic.bridge is longer than 15 characters");
  if (c.nic_hold_max_kib * 1024 < 65536) return Status::InvalidArgument("nic.hold_max_kib must be >= 64");
  for (const std::string* dir : {&c.primary_state_dir, &c.standby_state_dir}) {
    auto args = output_commit::QemuNicArgs({c.nic_mac, c.nic_model}, *dir);
    if (!args.ok()) return args.status().WithContext("[nic]");
  }
  return Status::Ok();
}

Status ValidateDisk(const Config& c) {
  if (!c.disk) return Status::Ok();
  if (c.disk_image.empty()) {
    return Status::InvalidArgument("disk.image (the path of a raw image; relative: in the role's state_dir) is "
                                   "required in a [disk] section");
  }
  if (c.disk_format != "raw") {
    return Status::InvalidArgument("disk.format '" + c.disk_format +
                                   "': only raw images are served (convert: qemu-img convert -O raw in.qcow2 out.raw)");
  }
  for (const std::string* dir : {&c.primary_state_dir, &c.standby_state_dir}) {
    if (dir->size() + sizeof("/disk.sock") - 1 > 107 || dir->find(',') != std::string::npos) {
      return Status::InvalidArgument("[disk]: state_dir " + *dir + " is too long or has a comma for the disk socket");
    }
  }
  return Status::Ok();
}

Status Validate(const Config& c) {
  if (c.vm_name.empty() || c.vm_name.find_first_of("/ \t") != std::string::npos) {
    return Status::InvalidArgument("vm.name must be a non-empty word without '/' or spaces");
  }
  if (c.accel != "kvm" && c.accel != "tcg") return Status::InvalidArgument("vm.accel must be kvm or tcg");
  if (c.kernel.empty()) return Status::InvalidArgument("vm.kernel is required");
  if (c.memory_dir.empty() || c.memory_dir.front() != '/') {
    return Status::InvalidArgument("vm.memory_dir must be an absolute path");
  }
  for (const std::string* dir : {&c.primary_state_dir, &c.standby_state_dir}) {
    auto console = output_commit::QemuConsoleArgs(*dir);
    if (!console.ok()) return console.status().WithContext("state_dir " + *dir);
  }
  TANDEM_RETURN_IF_ERROR(ValidateNic(c));
  TANDEM_RETURN_IF_ERROR(ValidateDisk(c));
  if (c.primary_heartbeat.empty() || c.primary_heartbeat.size() != c.standby_heartbeat.size()) {
    return Status::InvalidArgument(
        "primary.heartbeat and standby.heartbeat must list the same number (>= 1) of link addresses");
  }
  if (c.psk.empty()) return Status::InvalidArgument("heartbeat.psk or heartbeat.psk_file is required");
  if (c.heartbeat_timeout_ms <= c.heartbeat_interval_ms) {
    return Status::InvalidArgument("heartbeat.timeout_ms must be larger than heartbeat.interval_ms");
  }
  if (c.lease_ms <= c.heartbeat_interval_ms * 2) {
    return Status::InvalidArgument("witness.lease_ms must be more than twice heartbeat.interval_ms (renewals)");
  }
  return Status::Ok();
}

}  // namespace

Result<Config> ParseConfig(const std::string& text) {
  Config config;
  TANDEM_ASSIGN_OR_RETURN(std::vector<IniEntry> entries, ParseIni(text));
  for (const IniEntry& entry : entries) {
    const std::string where = "line " + std::to_string(entry.line);
    auto it = Setters().find(entry.key);
    if (it == Setters().end()) return Status::InvalidArgument(where + ": unknown setting " + entry.key);
    TANDEM_RETURN_IF_ERROR(it->second(config, entry.value).WithContext(where + " (" + entry.key + ")"));
  }
  TANDEM_RETURN_IF_ERROR(Validate(config));
  TANDEM_RETURN_IF_ERROR(CheckQemuExtra(&config));
  return config;
}

Result<Config> LoadConfig(const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(std::string text, Env::Default()->ReadFile(path));
  auto config = ParseConfig(text);
  if (!config.ok()) return config.status().WithContext(path);
  return config;
}

}  // namespace tandem::cli
