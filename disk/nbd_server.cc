#include "disk/nbd_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "disk/nbd_protocol.h"

namespace tandem::disk {

namespace {

using namespace nbd;  // NOLINT: the protocol's names read best unqualified here

// Longest option data accepted (an export name is at most 4096 bytes by the spec, INFO requests are tiny).
constexpr uint32_t kMaxOptionLength = 8192;
// Options a client may send before it must pick an export (a client looping on LIST is dropped).
constexpr int kMaxOptions = 256;

uint16_t LoadBe16At(const uint8_t* p) { return LoadBe16(p); }
void StoreBe16(uint8_t* p, uint16_t v) { p[0] = uint8_t(v >> 8), p[1] = uint8_t(v); }

// send() without SIGPIPE: a client that vanished is an error value, not a dead process.
Status SendAll(int fd, const void* data, size_t len) {
  auto* p = static_cast<const uint8_t*>(data);
  while (len > 0) {
    ssize_t n = ::send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EPIPE || errno == ECONNRESET) return Status::Closed("NBD client went away");
      return Status::FromErrno("send", errno);
    }
    p += n;
    len -= size_t(n);
  }
  return Status::Ok();
}

// Reads and drops `len` bytes: a refused WRITE's payload, so the next request header is where it should be.
Status Discard(int fd, uint64_t len) {
  uint8_t scratch[16384];
  while (len > 0) {
    size_t chunk = size_t(std::min<uint64_t>(len, sizeof(scratch)));
    TANDEM_RETURN_IF_ERROR(ReadFull(fd, scratch, chunk));
    len -= chunk;
  }
  return Status::Ok();
}

// Reads a request or option header. A client that hangs up before its first byte ended cleanly (Ok, *ended);
// one that hangs up inside it vanished mid-request (Closed).
Status ReadHeader(int fd, uint8_t* header, size_t len, bool* ended) {
  *ended = false;
  for (;;) {
    ssize_t n = ::recv(fd, header, 1, 0);
    if (n == 1) break;
    if (n == 0 || (n < 0 && errno == ECONNRESET)) {
      *ended = true;
      return Status::Ok();
    }
    if (errno != EINTR) return Status::FromErrno("recv", errno);
  }
  return ReadFull(fd, header + 1, len - 1);
}

Status SendOptionReply(int fd, uint32_t option, uint32_t type, const uint8_t* data = nullptr, uint32_t len = 0) {
  uint8_t header[20];
  StoreBe64(header, kOptionReplyMagic);
  StoreBe32(header + 8, option);
  StoreBe32(header + 12, type);
  StoreBe32(header + 16, len);
  TANDEM_RETURN_IF_ERROR(SendAll(fd, header, sizeof(header)));
  return len ? SendAll(fd, data, len) : Status::Ok();
}

uint32_t NbdErrorFor(const Status& st) {
  if (IsNoSpace(st)) return kEnospc;
  if (st.code() == Status::Code::kAborted) return kEshutdown;
  return kEio;
}

bool InBounds(uint64_t offset, uint64_t length, uint64_t size) { return offset <= size && length <= size - offset; }

}  // namespace

Result<std::unique_ptr<NbdServer>> NbdServer::Start(const NbdServerOptions& options, BlockDevice* device) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (options.socket_path.empty() || options.socket_path.size() >= sizeof(addr.sun_path)) {
    return Status::InvalidArgument("NBD socket path '" + options.socket_path + "' is empty or longer than " +
                                   std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  }
  if (options.max_payload < 4096) return Status::InvalidArgument("NBD max_payload below 4096");
  memcpy(addr.sun_path, options.socket_path.c_str(), options.socket_path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::FromErrno("socket", errno);
  // A socket left by a previous run is replaced; anything else at that path is a configuration error, never
  // deleted (it could be the image itself).
  struct stat st;
  if (::lstat(options.socket_path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Status::InvalidArgument("NBD socket path " + options.socket_path + " exists and is not a socket");
    }
    ::unlink(options.socket_path.c_str());
  }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Status::FromErrno("bind " + options.socket_path, errno);
  }
  if (::listen(fd.get(), 4) != 0) return Status::FromErrno("listen", errno);
  UniqueFd stop(::eventfd(0, EFD_CLOEXEC));
  if (!stop.valid()) return Status::FromErrno("eventfd", errno);
  std::unique_ptr<NbdServer> server(new NbdServer(options, device, std::move(fd), std::move(stop)));
  server->thread_ = std::thread([s = server.get()] { s->Run(); });
  return server;
}

NbdServer::NbdServer(const NbdServerOptions& options, BlockDevice* device, UniqueFd listen_fd, UniqueFd stop_fd)
    : options_(options), device_(device), listen_fd_(std::move(listen_fd)), stop_fd_(std::move(stop_fd)) {}

NbdServer::~NbdServer() { Stop(); }

void NbdServer::Stop() {
  if (stopping_.exchange(true)) return;
  uint64_t one = 1;
  (void)!::write(stop_fd_.get(), &one, sizeof(one));
  {
    std::lock_guard lock(conn_mu_);
    if (conn_fd_ >= 0) ::shutdown(conn_fd_, SHUT_RDWR);
  }
  if (thread_.joinable()) thread_.join();
  ::unlink(options_.socket_path.c_str());
}

NbdServerStats NbdServer::stats() const {
  return {connections_.load(), requests_.load(), error_replies_.load(), disconnects_.load()};
}

void NbdServer::Run() {
  while (!stopping_.load()) {
    pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      TLOG_ERROR("nbd", "poll: %s", strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    UniqueFd conn(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn.valid()) continue;
    {
      std::lock_guard lock(conn_mu_);
      if (stopping_.load()) return;
      conn_fd_ = conn.get();
    }
    ++connections_;
    Serve(conn.get());
    std::lock_guard lock(conn_mu_);
    conn_fd_ = -1;
  }
}

void NbdServer::Serve(int fd) {
  // A client that connects and then says nothing would hold the only connection: the handshake has a deadline.
  // Once transmitting, an idle client is normal (a guest that does no I/O).
  timeval deadline{.tv_sec = options_.handshake_timeout_ms / 1000,
                   .tv_usec = (options_.handshake_timeout_ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &deadline, sizeof(deadline));
  bool transmit = false;
  Status st = Handshake(fd, &transmit);
  if (st.ok() && transmit) {
    timeval none{};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none));
    st = Transmit(fd);
  }
  if (!st.ok() && !stopping_.load()) {
    ++disconnects_;
    TLOG_WARN("nbd", "client dropped: %s", st.ToString().c_str());
  }
}

Status NbdServer::Handshake(int fd, bool* transmit) {
  uint8_t hello[18];
  StoreBe64(hello, kMagic);
  StoreBe64(hello + 8, kOptionMagic);
  StoreBe16(hello + 16, kFlagFixedNewstyle | kFlagNoZeroes);
  TANDEM_RETURN_IF_ERROR(SendAll(fd, hello, sizeof(hello)));
  uint8_t client_flags_be[4];
  TANDEM_RETURN_IF_ERROR(ReadFull(fd, client_flags_be, 4));
  uint32_t client_flags = LoadBe32(client_flags_be);
  if (client_flags & ~(kClientFlagFixedNewstyle | kClientFlagNoZeroes)) {
    return Status::Unsupported("NBD client flags " + std::to_string(client_flags) + " has unknown bits");
  }
  const bool no_zeroes = client_flags & kClientFlagNoZeroes;

  std::vector<uint8_t> data;
  for (int n = 0; n < kMaxOptions; ++n) {
    uint8_t header[16];
    bool ended = false;
    TANDEM_RETURN_IF_ERROR(ReadHeader(fd, header, sizeof(header), &ended));
    if (ended) return Status::Ok();
    if (LoadBe64(header) != kOptionMagic) return Status::Corruption("NBD option without IHAVEOPT magic");
    uint32_t option = LoadBe32(header + 8);
    uint32_t length = LoadBe32(header + 12);
    if (length > kMaxOptionLength) {
      if (option == kOptExportName) return Status::Corruption("NBD export name of " + std::to_string(length) + " bytes");
      TANDEM_RETURN_IF_ERROR(Discard(fd, length));
      TANDEM_RETURN_IF_ERROR(SendOptionReply(fd, option, kRepErrTooBig));
      continue;
    }
    data.resize(length);
    TANDEM_RETURN_IF_ERROR(ReadFull(fd, data.data(), length));
    const std::string name(data.begin(), data.end());
    switch (option) {
      case kOptExportName: {
        // No error reply exists for this option: an unknown name can only be answered by hanging up.
        if (name != options_.export_name && !name.empty()) {
          return Status::NotFound("NBD client asked for unknown export '" + name + "'");
        }
        uint8_t reply[10 + 124] = {};
        StoreBe64(reply, device_->size());
        StoreBe16(reply + 8, kFlagHasFlags | kFlagSendFlush | kFlagSendFua | kFlagSendTrim | kFlagSendWriteZeroes);
        *transmit = true;
        return SendAll(fd, reply, no_zeroes ? 10 : sizeof(reply));
      }
      case kOptAbort:
        (void)SendOptionReply(fd, option, length ? kRepErrInvalid : kRepAck);
        return Status::Ok();
      case kOptList: {
        if (length != 0) {
          TANDEM_RETURN_IF_ERROR(SendOptionReply(fd, option, kRepErrInvalid));
          break;
        }
        std::vector<uint8_t> entry(4 + options_.export_name.size());
        StoreBe32(entry.data(), uint32_t(options_.export_name.size()));
        memcpy(entry.data() + 4, options_.export_name.data(), options_.export_name.size());
        TANDEM_RETURN_IF_ERROR(SendOptionReply(fd, option, kRepServer, entry.data(), uint32_t(entry.size())));
        TANDEM_RETURN_IF_ERROR(SendOptionReply(fd, option, kRepAck));
        break;
      }
      case kOptInfo:
      case kOptGo:
        TANDEM_RETURN_IF_ERROR(HandleInfoOrGo(fd, option, data, transmit));
        if (*transmit) return Status::Ok();
        break;
      default:  // STARTTLS, STRUCTURED_REPLY, metadata contexts, extended headers: simple replies only
        TANDEM_RETURN_IF_ERROR(SendOptionReply(fd, option, kRepErrUnsup));
        break;
    }
  }
  return Status::Corruption("NBD client sent " + std::to_string(kMaxOptions) + " options without choosing");
}

Status NbdServer::HandleInfoOrGo(int fd, uint32_t option, const std::vector<uint8_t>& data, bool* transmit) {
  // name length (4), name, number of info requests (2), info requests (2 each): every byte accounted for.
  if (data.size() < 6) return SendOptionReply(fd, option, kRepErrInvalid);
  uint64_t name_len = LoadBe32(data.data());
  if (name_len > data.size() - 6) return SendOptionReply(fd, option, kRepErrInvalid);
  uint16_t requests = LoadBe16At(data.data() + 4 + name_len);
  if (data.size() != 6 + name_len + 2ull * requests) return SendOptionReply(fd, option, kRepErrInvalid);
  std::string name(data.begin() + 4, data.begin() + 4 + long(name_len));
  if (name != options_.export_name && !name.empty()) {
    const std::string msg = "no export named '" + name + "'";
    return SendOptionReply(fd, option, kRepErrUnknown, reinterpret_cast<const uint8_t*>(msg.data()),
                           uint32_t(msg.size()));
  }
  bool want_block_size = false, want_description = false;
  for (uint16_t i = 0; i < requests; ++i) {
    uint16_t info = LoadBe16At(data.data() + 6 + name_len + 2 * i);
    want_block_size |= info == kInfoBlockSize;
    want_description |= info == kInfoDescription;
  }
  uint8_t export_info[12];
  StoreBe16(export_info, kInfoExport);
  StoreBe64(export_info + 2, device_->size());
  StoreBe16(export_info + 10, kFlagHasFlags | kFlagSendFlush | kFlagSendFua | kFlagSendTrim | kFlagSendWriteZeroes);
  TANDEM_RETURN_IF_ERROR(SendOptionReply(fd, option, kRepInfo, export_info, sizeof(export_info)));
  if (want_block_size) {
    uint8_t sizes[14];
    StoreBe16(sizes, kInfoBlockSize);
    StoreBe32(sizes + 2, 1);                     // minimum: any byte offset and length are served
    StoreBe32(sizes + 6, 4096);                  // preferred
    StoreBe32(sizes + 10, options_.max_payload); // maximum
    TANDEM_RETURN_IF_ERROR(SendOptionReply(fd, option, kRepInfo, sizes, sizeof(sizes)));
  }
  if (want_description && !options_.description.empty()) {
    std::vector<uint8_t> d(2 + options_.description.size());
    StoreBe16(d.data(), kInfoDescription);
    memcpy(d.data() + 2, options_.description.data(), options_.description.size());
    TANDEM_RETURN_IF_ERROR(SendOptionReply(fd, option, kRepInfo, d.data(), uint32_t(d.size())));
  }
  TANDEM_RETURN_IF_ERROR(SendOptionReply(fd, option, kRepAck));
  *transmit = option == kOptGo;
  return Status::Ok();
}

Status NbdServer::Reply(int fd, uint64_t cookie, uint32_t error) {
  uint8_t reply[kSimpleReplySize];
  StoreBe32(reply, kSimpleReplyMagic);
  StoreBe32(reply + 4, error);
  StoreBe64(reply + 8, cookie);
  if (error) ++error_replies_;
  return SendAll(fd, reply, sizeof(reply));
}

Status NbdServer::Transmit(int fd) {
  const uint64_t size = device_->size();
  for (;;) {
    uint8_t req[kRequestSize];
    bool ended = false;
    TANDEM_RETURN_IF_ERROR(ReadHeader(fd, req, sizeof(req), &ended));
    if (ended) return Status::Ok();  // gone between requests without NBD_CMD_DISC: nothing was cut short
    // A request without its magic means client and server disagree on where a request starts: nothing after it
    // can be trusted, so hang up instead of guessing.
    if (LoadBe32(req) != kRequestMagic) return Status::Corruption("NBD request without its magic");
    const uint16_t flags = LoadBe16At(req + 4);
    const uint16_t type = LoadBe16At(req + 6);
    const uint64_t cookie = LoadBe64(req + 8);
    const uint64_t offset = LoadBe64(req + 16);
    const uint32_t length = LoadBe32(req + 24);
    ++requests_;
    switch (type) {
      case kCmdRead: {
        if ((flags & ~kCmdFlagFua) || length == 0 || length > options_.max_payload || !InBounds(offset, length, size)) {
          TANDEM_RETURN_IF_ERROR(Reply(fd, cookie, kEinval));
          break;
        }
        if (buffer_.size() < length) buffer_.resize(length);
        Status st = device_->Read(offset, std::span(buffer_.data(), length));
        TANDEM_RETURN_IF_ERROR(Reply(fd, cookie, st.ok() ? 0 : NbdErrorFor(st)));
        if (st.ok()) TANDEM_RETURN_IF_ERROR(SendAll(fd, buffer_.data(), length));
        break;
      }
      case kCmdWrite:
        TANDEM_RETURN_IF_ERROR(HandleWrite(fd, flags, cookie, offset, length));
        break;
      case kCmdFlush: {
        if (flags || offset || length) {
          TANDEM_RETURN_IF_ERROR(Reply(fd, cookie, kEinval));
          break;
        }
        Status st = device_->Flush();
        TANDEM_RETURN_IF_ERROR(Reply(fd, cookie, st.ok() ? 0 : NbdErrorFor(st)));
        break;
      }
      case kCmdTrim:
      case kCmdWriteZeroes: {
        const uint16_t allowed = type == kCmdTrim ? kCmdFlagFua : kCmdFlagFua | kCmdFlagNoHole;
        if ((flags & ~allowed) || length == 0) {
          TANDEM_RETURN_IF_ERROR(Reply(fd, cookie, kEinval));
          break;
        }
        if (!InBounds(offset, length, size)) {
          TANDEM_RETURN_IF_ERROR(Reply(fd, cookie, kEnospc));
          break;
        }
        const bool fua = flags & kCmdFlagFua;
        Status st = type == kCmdTrim ? device_->Trim(offset, length, fua) : device_->WriteZeroes(offset, length, fua);
        TANDEM_RETURN_IF_ERROR(Reply(fd, cookie, st.ok() ? 0 : NbdErrorFor(st)));
        break;
      }
      case kCmdDisc:
        return Status::Ok();
      default:  // CACHE, BLOCK_STATUS, RESIZE and anything unknown: refused, assuming no payload follows
        TANDEM_RETURN_IF_ERROR(Reply(fd, cookie, kEinval));
        break;
    }
  }
}

Status NbdServer::HandleWrite(int fd, uint16_t flags, uint64_t cookie, uint64_t offset, uint32_t length) {
  // The payload follows the request whatever we think of it: a refused one is read and dropped so the
  // connection stays in step.
  uint32_t error = 0;
  if ((flags & ~kCmdFlagFua) || length == 0 || length > options_.max_payload) {
    error = kEinval;
  } else if (!InBounds(offset, length, device_->size())) {
    error = kEnospc;
  }
  if (error) {
    TANDEM_RETURN_IF_ERROR(Discard(fd, length));
    return Reply(fd, cookie, error);
  }
  if (buffer_.size() < length) buffer_.resize(length);
  // A client that vanishes here leaves nothing behind: the write is applied only once all its bytes are in.
  TANDEM_RETURN_IF_ERROR(ReadFull(fd, buffer_.data(), length));
  Status st = device_->Write(offset, std::span<const uint8_t>(buffer_.data(), length), flags & kCmdFlagFua);
  return Reply(fd, cookie, st.ok() ? 0 : NbdErrorFor(st));
}

}  // namespace tandem::disk
