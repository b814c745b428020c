#include "qemu-integration/colo_endpoint.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "common/env.h"
#include "common/log.h"

namespace tandem::qemu {

Status StartColoMigration(QmpClient& qmp, const std::string& unix_socket, int checkpoint_ms) {
  if (checkpoint_ms < 1) return Status::InvalidArgument("checkpoint interval must be at least 1 ms");
  auto caps = qmp.Execute("migrate-set-capabilities",
                          {{"capabilities", nlohmann::json::array({{{"capability", "x-colo"}, {"state", true}}})}});
  if (!caps.ok()) return caps.status().WithContext("enable COLO (x-colo)");
  auto params = qmp.Execute("migrate-set-parameters", {{"x-checkpoint-delay", checkpoint_ms}});
  if (!params.ok()) return params.status().WithContext("set x-checkpoint-delay");
  auto migrate = qmp.Execute("migrate", {{"uri", "unix:" + unix_socket}});
  if (!migrate.ok()) return migrate.status().WithContext("start COLO migration to " + unix_socket);
  return Status::Ok();
}

Result<size_t> ColoEndpoint::SocketSource::ReadSome(uint8_t* dst, size_t cap) {
  for (;;) {
    pollfd pfd{fd, POLLIN, 0};
    int r = ::poll(&pfd, 1, timeout_ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("poll COLO socket", errno);
    }
    if (r == 0) return Status::Timeout("QEMU sent nothing for " + std::to_string(timeout_ms) + " ms");
    ssize_t n = ::recv(fd, dst, cap, 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      if (errno == ECONNRESET) return Status::Closed("QEMU reset the COLO migration socket");
      return Status::FromErrno("recv COLO socket", errno);
    }
    if (n == 0) return Status::Closed("QEMU closed the COLO migration socket");
    if (record_fd >= 0) {
      if (Status st = WriteFull(record_fd, dst, size_t(n)); !st.ok()) return st.WithContext("recording COLO stream");
    }
    return size_t(n);
  }
}

ColoEndpoint::ColoEndpoint(std::string path, UniqueFd listener, Env* env)
    : path_(std::move(path)), env_(env), listener_(std::move(listener)), reader_(&source_, 1 << 20),
      parser_(&reader_) {}

ColoEndpoint::~ColoEndpoint() {
  if (listener_.valid()) (void)env_->RemoveFile(path_);
}

Result<std::unique_ptr<ColoEndpoint>> ColoEndpoint::Listen(const std::string& unix_path, Env* env) {
  auto fd = env->ListenUnix(unix_path, 1);
  if (!fd.ok()) return fd.status().WithContext("COLO socket");
  return std::unique_ptr<ColoEndpoint>(new ColoEndpoint(unix_path, std::move(fd).value(), env));
}

Status ColoEndpoint::Accept(int timeout_ms) {
  if (!listener_.valid()) return Status::InvalidArgument("COLO endpoint already accepted a connection");
  Clock* clock = env_->clock();
  const int64_t deadline = clock->NowNanos() + int64_t(timeout_ms) * 1'000'000;
  for (;;) {
    const int64_t left_ms = (deadline - clock->NowNanos()) / 1'000'000;
    if (left_ms <= 0)
      return Status::Timeout("QEMU did not connect to " + path_ + " within " + std::to_string(timeout_ms) + " ms");
    pollfd pfd{listener_.get(), POLLIN, 0};
    int r = ::poll(&pfd, 1, int(left_ms));
    if (r < 0 && errno != EINTR) return Status::FromErrno("poll COLO listener", errno);
    if (r <= 0) continue;
    auto conn = env_->Accept(listener_.get());
    if (!conn.ok()) {
      if (conn.status().IsTimeout()) continue;  // the connection went away between poll and accept
      return conn.status().WithContext("COLO connection");
    }
    conn_ = std::move(conn).value();
    source_.fd = conn_.get();
    listener_.reset();
    (void)env_->RemoveFile(path_);
    return Status::Ok();
  }
}

Status ColoEndpoint::ReceivePrecopy(const LayoutCallback& on_layout, replicator::VmDescriptor* descriptor,
                                    std::vector<uint8_t>* device_state, int idle_timeout_ms) {
  if (!conn_.valid()) return Status::InvalidArgument("ReceivePrecopy before Accept");
  if (precopy_done_) return Status::InvalidArgument("precopy already received");
  source_.timeout_ms = idle_timeout_ms;
  TANDEM_RETURN_IF_ERROR(parser_.ParsePrecopy(on_layout, descriptor, device_state).WithContext("COLO precopy"));
  precopy_done_ = true;
  return Status::Ok();
}

Status ColoEndpoint::SendRaw(const uint8_t* data, size_t len) {
  while (len > 0) {
    ssize_t n = ::send(conn_.get(), data, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EPIPE || errno == ECONNRESET) return Status::Closed("QEMU closed the COLO migration socket");
      return Status::FromErrno("send on COLO socket", errno);
    }
    data += n, len -= size_t(n);
  }
  return Status::Ok();
}

Status ColoEndpoint::Send(ColoMessage message) {
  uint8_t b[4];
  StoreBe32(b, uint32_t(message));
  return SendRaw(b, sizeof(b));
}

Result<Precopy> ColoEndpoint::ReceivePrecopyImage(int idle_timeout_ms) {
  Precopy precopy;
  TANDEM_RETURN_IF_ERROR(ReceivePrecopy(
      [&](const replicator::VmDescriptor& layout) -> Result<replicator::PageSink*> {
        TANDEM_ASSIGN_OR_RETURN(precopy.image, replicator::RamImage::Create(layout, {}));
        return static_cast<replicator::PageSink*>(precopy.image.get());
      },
      &precopy.descriptor, &precopy.device_state, idle_timeout_ms));
  return precopy;
}

Result<Precopy> ColoEndpoint::ReceivePrecopyGuestRam(const std::map<std::string, std::string>& shared_files,
                                                     int idle_timeout_ms) {
  Precopy precopy;
  TANDEM_RETURN_IF_ERROR(ReceivePrecopy(
      [&](const replicator::VmDescriptor& layout) -> Result<replicator::PageSink*> {
        TANDEM_ASSIGN_OR_RETURN(precopy.ram, replicator::GuestRam::Open(layout, shared_files));
        return static_cast<replicator::PageSink*>(precopy.ram.get());
      },
      &precopy.descriptor, &precopy.device_state, idle_timeout_ms));
  return precopy;
}

Status ColoEndpoint::SendCheckpointReady() {
  if (!precopy_done_) return Status::InvalidArgument("CHECKPOINT_READY before the precopy was received");
  return Send(ColoMessage::kCheckpointReady).WithContext("CHECKPOINT_READY");
}

Status ColoEndpoint::ReceiveCheckpoint(replicator::Epoch* epoch, int timeout_ms, CheckpointTiming* timing) {
  if (!precopy_done_) return Status::InvalidArgument("checkpoint before the precopy was received");
  Clock* clock = env_->clock();
  source_.timeout_ms = timeout_ms;
  TANDEM_RETURN_IF_ERROR(
      parser_.ExpectMessage(ColoMessage::kCheckpointRequest).WithContext("waiting for CHECKPOINT_REQUEST"));
  timing->request_ns = clock->NowNanos();
  if (on_request_) on_request_();
  TANDEM_RETURN_IF_ERROR(Send(ColoMessage::kCheckpointReply).WithContext("CHECKPOINT_REPLY"));
  timing->reply_ns = clock->NowNanos();
  // The VM is stopped now: QEMU streams as fast as it can, so silence means trouble.
  source_.timeout_ms = std::max(timeout_ms, 5000);
  TANDEM_RETURN_IF_ERROR(parser_.ExpectMessage(ColoMessage::kVmstateSend).WithContext("checkpoint"));
  TANDEM_RETURN_IF_ERROR(parser_.ParseCheckpointState(epoch, &epoch->device_state()).WithContext("checkpoint"));
  timing->loaded_ready_ns = clock->NowNanos();
  return Status::Ok();
}

Status ColoEndpoint::ResumeVm() {
  uint8_t b[8];
  StoreBe32(b, uint32_t(ColoMessage::kVmstateReceived));
  StoreBe32(b + 4, uint32_t(ColoMessage::kVmstateLoaded));
  return SendRaw(b, sizeof(b)).WithContext("VMSTATE_RECEIVED/VMSTATE_LOADED");
}

}  // namespace tandem::qemu
