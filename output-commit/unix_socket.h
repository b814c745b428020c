// Unix socket helpers for this module (internal).
#pragma once

#include <sys/un.h>

#include <string>

#include "common/fd.h"
#include "common/status.h"

namespace tandem::output_commit {

// InvalidArgument if the path is empty or longer than sun_path takes (107 bytes).
Status MakeUnixAddress(const std::string& path, sockaddr_un* out);
// A non-blocking, close-on-exec unix socket of `type` bound to `path`; a stale socket file there is removed
// first (nothing else is: a regular file at the path is an error).
Result<UniqueFd> BindUnixSocket(const std::string& path, int type);
// Makes fd non-blocking.
Status SetNonBlocking(int fd);

}  // namespace tandem::output_commit
