#include "output-commit/unix_socket.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace tandem::output_commit {

Status MakeUnixAddress(const std::string& path, sockaddr_un* out) {
  *out = sockaddr_un{};
  out->sun_family = AF_UNIX;
  if (path.empty()) return Status::InvalidArgument("unix socket path is empty");
  if (path.size() >= sizeof(out->sun_path))
    return Status::InvalidArgument("unix socket path is longer than 107 bytes: " + path);
  std::memcpy(out->sun_path, path.c_str(), path.size() + 1);
  return Status::Ok();
}

Result<UniqueFd> BindUnixSocket(const std::string& path, int type) {
  sockaddr_un addr;
  TANDEM_RETURN_IF_ERROR(MakeUnixAddress(path, &addr));
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Status::InvalidArgument(path + " exists and is not a socket");
    ::unlink(path.c_str());
  }
  UniqueFd fd(::socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::FromErrno("socket", errno);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0)
    return Status::FromErrno("bind " + path, errno);
  return fd;
}

Status SetNonBlocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return Status::FromErrno("fcntl", errno);
  return Status::Ok();
}

}  // namespace tandem::output_commit
