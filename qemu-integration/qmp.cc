#include "qemu-integration/qmp.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

namespace tandem::qemu {
namespace {

constexpr size_t kMaxQueuedEvents = 1024;
constexpr size_t kMaxMessageBytes = 64 << 20;
constexpr int64_t kConnectRetryNs = 5'000'000;

}  // namespace

pid_t QmpClient::PeerPid() const {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd_.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
  return cred.pid;
}

Result<std::unique_ptr<QmpClient>> QmpClient::Connect(const std::string& unix_path, int timeout_ms, Env* env) {
  Clock* clock = env->clock();
  const int64_t deadline = clock->NowNanos() + int64_t(timeout_ms) * 1'000'000;
  auto fd = env->ConnectUnixUntil(unix_path, deadline, kConnectRetryNs);
  if (!fd.ok()) return fd.status().WithContext("QMP socket");
  std::unique_ptr<QmpClient> client(new QmpClient(std::move(fd).value(), clock));
  std::lock_guard<std::mutex> lock(client->mu_);
  auto greeting = client->ReadMessage(deadline);
  if (!greeting.ok()) return greeting.status().WithContext("QMP greeting from " + unix_path);
  if (!greeting->is_object() || !greeting->contains("QMP")) {
    return Status::Corruption("QMP greeting from " + unix_path + " is not a QMP greeting: " + greeting->dump());
  }
  client->greeting_ = (*greeting)["QMP"];
  const int64_t left_ms = std::max<int64_t>(1, (deadline - clock->NowNanos()) / 1'000'000);
  auto caps = client->ExecuteLocked("qmp_capabilities", nullptr, int(left_ms));
  if (!caps.ok()) return caps.status().WithContext("QMP capabilities negotiation on " + unix_path);
  return client;
}

Status QmpClient::Send(const nlohmann::json& message) {
  const std::string line = message.dump() + "\n";
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::send(fd_.get(), line.data() + done, line.size() - done, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EPIPE || errno == ECONNRESET) return Status::Closed("QMP connection closed by QEMU");
      return Status::FromErrno("QMP send", errno);
    }
    done += size_t(n);
  }
  return Status::Ok();
}

Result<nlohmann::json> QmpClient::ReadMessage(int64_t deadline_ns) {
  for (;;) {
    // QEMU terminates every message with "\r\n" and never puts a raw newline inside one.
    for (size_t nl = buffer_.find('\n'); nl != std::string::npos; nl = buffer_.find('\n')) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json message = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (message.is_discarded()) return Status::Corruption("QMP sent a line that is not JSON: " + line);
      return message;
    }
    if (buffer_.size() > kMaxMessageBytes) return Status::Corruption("QMP message larger than 64 MiB");
    // Past the deadline, still look once without waiting: a deadline of "now" means "what is there already".
    const int64_t left_ns = deadline_ns - clock_->NowNanos();
    pollfd pfd{fd_.get(), POLLIN, 0};
    int r = ::poll(&pfd, 1, left_ns <= 0 ? 0 : int(std::min<int64_t>((left_ns + 999'999) / 1'000'000, 60'000)));
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("QMP poll", errno);
    }
    if (r == 0) {
      if (left_ns <= 0) return Status::Timeout("no QMP message in time");
      continue;
    }
    char chunk[65536];
    ssize_t n = ::recv(fd_.get(), chunk, sizeof(chunk), 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      if (errno == ECONNRESET) return Status::Closed("QMP connection reset by QEMU");
      return Status::FromErrno("QMP recv", errno);
    }
    if (n == 0) return Status::Closed("QMP connection closed by QEMU");
    buffer_.append(chunk, size_t(n));
  }
}

void QmpClient::QueueEvent(nlohmann::json event) {
  if (events_.size() >= kMaxQueuedEvents) events_.pop_front();
  events_.push_back(std::move(event));
}

Result<nlohmann::json> QmpClient::Execute(const std::string& command, const nlohmann::json& arguments, int timeout_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  return ExecuteLocked(command, arguments, timeout_ms);
}

Result<nlohmann::json> QmpClient::ExecuteLocked(const std::string& command, const nlohmann::json& arguments,
                                                int timeout_ms) {
  const int64_t deadline = DeadlineAfter(timeout_ms);
  const uint64_t id = next_id_++;
  nlohmann::json request = {{"execute", command}, {"id", id}};
  if (!arguments.is_null()) request["arguments"] = arguments;
  TANDEM_RETURN_IF_ERROR(Send(request).WithContext("QMP " + command));
  for (;;) {
    auto message = ReadMessage(deadline);
    if (!message.ok()) return message.status().WithContext("QMP " + command);
    nlohmann::json& m = *message;
    if (!m.is_object()) return Status::Corruption("QMP sent a non-object message: " + m.dump());
    if (m.contains("event")) {
      QueueEvent(std::move(m));
      continue;
    }
    // A reply to an earlier command that timed out: not ours.
    if (!m.contains("id") || m["id"] != id) continue;
    if (m.contains("return")) return std::move(m["return"]);
    if (m.contains("error")) {
      const nlohmann::json& e = m["error"];
      std::string cls = e.is_object() ? e.value("class", std::string("?")) : "?";
      std::string desc = e.is_object() ? e.value("desc", std::string("?")) : e.dump();
      return Status::InvalidArgument("QMP " + command + " failed: " + cls + ": " + desc);
    }
    return Status::Corruption("QMP reply to " + command + " has neither return nor error: " + m.dump());
  }
}

Result<nlohmann::json> QmpClient::WaitForEvent(const std::string& name, int timeout_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = events_.begin(); it != events_.end(); ++it) {
    if ((*it)["event"] == name) {
      nlohmann::json event = std::move(*it);
      events_.erase(it);
      return event;
    }
  }
  const int64_t deadline = DeadlineAfter(timeout_ms);
  for (;;) {
    auto message = ReadMessage(deadline);
    if (!message.ok()) {
      if (message.status().IsTimeout()) {
        return Status::Timeout("no QMP event " + name + " within " + std::to_string(timeout_ms) + " ms");
      }
      return message.status().WithContext("waiting for QMP event " + name);
    }
    nlohmann::json& m = *message;
    if (!m.is_object() || !m.contains("event")) continue;  // a late reply to a timed-out command
    if (m["event"] == name) return std::move(m);
    QueueEvent(std::move(m));
  }
}

Result<std::vector<nlohmann::json>> QmpClient::TakeEvents() {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t read = 0; read < kMaxQueuedEvents; ++read) {  // bounded even if QEMU never stops talking
    auto message = ReadMessage(DeadlineAfter(0));
    if (!message.ok()) {
      if (message.status().IsTimeout()) break;
      return message.status().WithContext("reading QMP events");
    }
    if (message->is_object() && message->contains("event")) QueueEvent(std::move(*message));
  }
  std::vector<nlohmann::json> events(std::make_move_iterator(events_.begin()), std::make_move_iterator(events_.end()));
  events_.clear();
  return events;
}

}  // namespace tandem::qemu
