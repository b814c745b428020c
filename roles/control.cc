#include "roles/control.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/log.h"

namespace tandem::roles {
namespace {

constexpr size_t kMaxLine = 4096;

Status UnixAddress(const std::string& path, sockaddr_un* addr) {
  *addr = {};
  addr->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr->sun_path)) {
    return Status::InvalidArgument("control socket path too long: " + path);
  }
  memcpy(addr->sun_path, path.c_str(), path.size() + 1);
  return Status::Ok();
}

// Reads up to the first newline (excluded) or until the peer closes, within the deadline.
Result<std::string> ReadLine(int fd, std::chrono::steady_clock::time_point deadline) {
  std::string line;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Status::Timeout("no answer line in time");
    pollfd pfd{fd, POLLIN, 0};
    const int ready = poll(&pfd, 1, int(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return Status::FromErrno("poll control socket", errno);
    if (ready == 0) continue;
    char buf[256];
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("recv control socket", errno);
    if (n == 0) return line.empty() ? Result<std::string>(Status::Closed("closed without an answer")) : line;
    line.append(buf, size_t(n));
    if (const size_t end = line.find('\n'); end != std::string::npos) return line.substr(0, end);
    if (line.size() > kMaxLine) return Status::InvalidArgument("control line too long");
  }
}

Status WriteAll(int fd, const std::string& data) {
  for (size_t done = 0; done < data.size();) {
    const ssize_t n = send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("send control socket", errno);
    done += size_t(n);
  }
  return Status::Ok();
}

}  // namespace

std::string ControlSocketIn(const std::string& state_dir) { return state_dir + "/control.sock"; }

Result<std::unique_ptr<ControlServer>> ControlServer::Start(const std::string& socket_path,
                                                            std::function<std::string(const std::string&)> handle) {
  sockaddr_un addr;
  TANDEM_RETURN_IF_ERROR(UnixAddress(socket_path, &addr));
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Status::FromErrno("control socket", errno);
  unlink(socket_path.c_str());  // a socket our earlier process left behind (the directory is private)
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd.get(), 4) != 0) {
    return Status::FromErrno("bind control socket " + socket_path, errno);
  }
  return std::unique_ptr<ControlServer>(new ControlServer(socket_path, std::move(fd), std::move(handle)));
}

ControlServer::ControlServer(std::string path, UniqueFd listener, std::function<std::string(const std::string&)> handle)
    : path_(std::move(path)), listener_(std::move(listener)), handle_(std::move(handle)) {
  thread_ = std::thread([this] { Serve(); });
}

ControlServer::~ControlServer() {
  stop_ = true;
  thread_.join();
  unlink(path_.c_str());
}

void ControlServer::Serve() {
  while (!stop_) {
    pollfd pfd{listener_.get(), POLLIN, 0};
    if (poll(&pfd, 1, 100) <= 0) continue;  // wakes up to see stop_
    UniqueFd client(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (client.get() < 0) continue;
    auto request = ReadLine(client.get(), std::chrono::steady_clock::now() + std::chrono::seconds(2));
    if (!request.ok()) continue;
    TLOG_INFO("control", "request: %s", request->c_str());
    const std::string answer = handle_(*request);
    TLOG_INFO("control", "answer: %s", answer.c_str());
    WriteAll(client.get(), answer + "\n").ok();  // a client that went away is not an error here
  }
}

Result<std::string> AskRole(const std::string& socket_path, const std::string& request, int timeout_ms) {
  sockaddr_un addr;
  TANDEM_RETURN_IF_ERROR(UnixAddress(socket_path, &addr));
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Status::FromErrno("control socket", errno);
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Status::NotFound("no running role listens on " + socket_path + " (" + strerror(errno) + ")");
  }
  TANDEM_RETURN_IF_ERROR(WriteAll(fd.get(), request + "\n"));
  return ReadLine(fd.get(), std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms));
}

}  // namespace tandem::roles
