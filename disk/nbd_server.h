// An NBD server on a unix socket for QEMU's nbd block driver: fixed newstyle handshake, simple replies, one
// connection at a time, its requests served in order. Every request is checked; a bad one gets the NBD error the
// protocol prescribes, a client that breaks the protocol or vanishes is disconnected; nothing crashes the server.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/fd.h"
#include "common/status.h"
#include "disk/block_device.h"

namespace tandem::disk {

struct NbdServerOptions {
  std::string socket_path;   // e.g. <state_dir>/disk.sock (a stale socket file there is replaced)
  std::string export_name;   // QEMU's `export=`; the empty (default) name is accepted too
  std::string description;   // NBD_INFO_DESCRIPTION, if asked for
  uint32_t max_payload = 32u << 20;  // largest READ/WRITE; advertised as the maximum block size
  // A client silent this long during the handshake is dropped (it would hold the only connection).
  int handshake_timeout_ms = 10'000;
};

struct NbdServerStats {
  uint64_t connections = 0;
  uint64_t requests = 0;
  uint64_t error_replies = 0;   // requests answered with an NBD error
  uint64_t disconnects = 0;     // clients dropped for breaking the protocol or vanishing mid-request
};

class NbdServer {
 public:
  // Binds and listens before returning (a client may connect as soon as this returns), then serves on a thread.
  static Result<std::unique_ptr<NbdServer>> Start(const NbdServerOptions& options, BlockDevice* device);
  ~NbdServer();
  NbdServer(const NbdServer&) = delete;
  NbdServer& operator=(const NbdServer&) = delete;

  // Disconnects the client and stops; the socket file is removed. A request waiting in the device (the write
  // log's backpressure) must be released first: EpochWriteLog::Shutdown.
  void Stop();
  NbdServerStats stats() const;

 private:
  NbdServer(const NbdServerOptions& options, BlockDevice* device, UniqueFd listen_fd, UniqueFd stop_fd);
  void Run();
  void Serve(int fd);
  Status Handshake(int fd, bool* transmit);
  Status Transmit(int fd);
  Status HandleInfoOrGo(int fd, uint32_t option, const std::vector<uint8_t>& data, bool* transmit);
  Status HandleWrite(int fd, uint16_t flags, uint64_t cookie, uint64_t offset, uint32_t length);
  Status Reply(int fd, uint64_t cookie, uint32_t error);

  const NbdServerOptions options_;
  BlockDevice* const device_;
  UniqueFd listen_fd_;
  UniqueFd stop_fd_;  // eventfd: wakes the accept loop
  std::thread thread_;
  std::mutex conn_mu_;
  int conn_fd_ = -1;  // the client being served, so Stop can shut it down
  std::atomic<bool> stopping_{false};
  std::vector<uint8_t> buffer_;  // one request's data, up to max_payload
  std::atomic<uint64_t> connections_{0}, requests_{0}, error_replies_{0}, disconnects_{0};
};

}  // namespace tandem::disk
