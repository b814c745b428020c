#include "qemu-integration/resume.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>

#include "common/fd.h"
#include "common/log.h"

namespace tandem::qemu {

std::string BuildResumeStream(const replicator::VmDescriptor& descriptor, const std::vector<uint8_t>& device_state) {
  std::string out;
  out.reserve(8 + descriptor.qemu_configuration.size() + device_state.size() + 5 + descriptor.qemu_vmdesc_json.size());
  uint8_t b[8];
  StoreBe32(b, 0x5145564d);  // "QEVM"
  StoreBe32(b + 4, 3);
  out.append(reinterpret_cast<const char*>(b), 8);
  out += descriptor.qemu_configuration;
  out.append(reinterpret_cast<const char*>(device_state.data()), device_state.size());
  out.push_back(0x06);  // VMDESCRIPTION: QEMU reads it after EOF (and ignores its contents)
  StoreBe32(b, uint32_t(descriptor.qemu_vmdesc_json.size()));
  out.append(reinterpret_cast<const char*>(b), 4);
  out += descriptor.qemu_vmdesc_json;
  return out;
}

namespace {

constexpr int64_t kConnectRetryNs = 1'000'000;  // QEMU creates the socket a moment after migrate-incoming

}  // namespace

Status ResumeStandbyQemu(QmpClient& qmp, const std::string& stream, const std::string& incoming_unix_socket,
                         int timeout_ms, Env* env) {
  Clock* clock = env->clock();
  const int64_t deadline = clock->NowNanos() + int64_t(timeout_ms) * 1'000'000;
  auto left_ms = [&] { return int(std::max<int64_t>(1, (deadline - clock->NowNanos()) / 1'000'000)); };

  auto status = qmp.Execute("query-status", nullptr, left_ms());
  if (!status.ok()) return status.status().WithContext("standby QEMU");
  const std::string before = status->value("status", std::string("?"));
  if (before != "inmigrate") {
    return Status::InvalidArgument("standby QEMU is not waiting for an incoming migration (status '" + before +
                                   "', expected 'inmigrate': was it started with -incoming defer?)");
  }
  (void)env->RemoveFile(incoming_unix_socket);
  auto incoming = qmp.Execute("migrate-incoming", {{"uri", "unix:" + incoming_unix_socket}}, left_ms());
  if (!incoming.ok()) return incoming.status();

  {
    auto connected = env->ConnectUnixUntil(incoming_unix_socket, deadline, kConnectRetryNs);
    if (!connected.ok()) return connected.status().WithContext("standby QEMU's incoming socket");
    UniqueFd fd = std::move(connected).value();
    timeval tv{};
    tv.tv_sec = left_ms() / 1000;
    tv.tv_usec = (left_ms() % 1000) * 1000;
    setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    size_t done = 0;
    while (done < stream.size()) {
      ssize_t n = ::send(fd.get(), stream.data() + done, stream.size() - done, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return Status::Timeout("standby QEMU stopped reading the resume stream");
        return Status::FromErrno("write resume stream to standby QEMU (it may have refused it; see its log)", errno);
      }
      done += size_t(n);
    }
  }
  (void)env->RemoveFile(incoming_unix_socket);

  for (;;) {
    status = qmp.Execute("query-status", nullptr, left_ms());
    if (!status.ok()) {
      if (status.status().IsClosed()) {
        return Status::Aborted(
            "standby QEMU exited while loading the resume stream (it rejected the device state; "
            "see its log)");
      }
      return status.status().WithContext("standby QEMU during resume");
    }
    const std::string now = status->value("status", std::string("?"));
    if (now == "running") return Status::Ok();
    if (now != "inmigrate" && now != "prelaunch" && now != "paused" && now != "finish-migrate") {
      return Status::Aborted("standby QEMU is in state '" + now + "' after loading the resume stream");
    }
    auto migrate = qmp.Execute("query-migrate", nullptr, left_ms());
    if (migrate.ok() && migrate->value("status", std::string()) == "failed") {
      return Status::Aborted("standby QEMU failed to load the resume stream: " +
                             migrate->value("error-desc", std::string("no reason given")));
    }
    if (clock->NowNanos() >= deadline) {
      return Status::Timeout("standby QEMU not running " + std::to_string(timeout_ms) + " ms after resume (state '" +
                             now + "')");
    }
    clock->SleepNanos(2'000'000);
  }
}

}  // namespace tandem::qemu
