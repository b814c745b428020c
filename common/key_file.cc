#include "common/key_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "common/fd.h"

namespace tandem {

Status CheckKeyLength(std::string_view key, std::string_view what) {
  if (key.size() >= kMinKeyBytes) return Status::Ok();
  return Status::InvalidArgument(std::string(what) + " is " + std::to_string(key.size()) + " bytes long; a key needs " +
                                 std::to_string(kMinKeyBytes) +
                                 " or more random bytes (e.g. head -c 32 /dev/urandom | base64 > key; chmod 600 key)");
}

Result<std::string> ReadKeyFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd.valid()) return Status::FromErrno("open key file " + path, errno);
  // Checked on the open file, not the path: what is read is what was checked.
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("stat key file " + path, errno);
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument("key file " + path + " is not a regular file");
  if (st.st_uid != ::geteuid()) {
    return Status::InvalidArgument("key file " + path + " is owned by uid " + std::to_string(st.st_uid) +
                                   ", not by uid " + std::to_string(::geteuid()) +
                                   " (this process): refusing a key another user controls");
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
    return Status::InvalidArgument("key file " + path + " has mode " + mode +
                                   ": group or others may read or replace it; chmod 600 " + path);
  }
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("read key file " + path, errno);
    if (n == 0) break;
    text.append(buf, size_t(n));
    if (text.size() > (1u << 16)) return Status::InvalidArgument("key file " + path + " is larger than 64 KiB");
  }
  const size_t first = text.find_first_not_of(" \t\r\n");
  std::string key = first == std::string::npos ? "" : text.substr(first, text.find_last_not_of(" \t\r\n") - first + 1);
  TANDEM_RETURN_IF_ERROR(CheckKeyLength(key, "the key in " + path));
  return key;
}

}  // namespace tandem
