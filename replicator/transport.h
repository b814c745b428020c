// How replication bytes move, kept apart from what they mean (CRIU's page_xfer shape): the epoch encoder writes
// framed records into an EpochSink without knowing where they go, the standby reads records from a Transport
// without knowing where they came from. Backends: a TCP socket (one of several I/O engines) and a local file
// (tests and the bench write streams to files and replay them).
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"
#include "common/status.h"
#include "replicator/decode_error.h"

namespace tandem::replicator {

// A reliable, ordered byte stream in both directions. Send and Recv may be called from two different threads
// at once (the shipper sends epochs on one and reads acks on the other); Shutdown from any thread.
class Transport {
 public:
  virtual ~Transport() = default;
  // Sends every byte of `iov`, handling short writes. Timeout when no byte moved for timeout_ms (the io_uring
  // engine looks at progress once per timeout_ms, so it notices a stall after timeout_ms to twice that), Closed
  // when the peer went away, Aborted after Shutdown().
  virtual Status Send(std::span<const iovec> iov, int timeout_ms) = 0;
  // Reads exactly `len` bytes. Closed("end of stream") when the stream ends before the first byte,
  // Closed("... truncated ...") when it ends part way.
  virtual Status Recv(void* buf, size_t len, int timeout_ms) = 0;
  // Returns once a Recv would not block (data or end of stream). Timeout after timeout_ms; < 0 waits forever.
  virtual Status WaitReadable(int timeout_ms) = 0;
  // Waits until the peer's kernel has every byte sent so far (TCP: nothing left in the send queue), so that a
  // process about to die on purpose knows what it sent arrived. Best effort; transports without a queue: Ok.
  virtual Status WaitSent(int /*timeout_ms*/) { return Status::Ok(); }
  // Bytes handed to the kernel that it could not pass on yet: TCP, not yet sent (the window or the link is
  // full); unix socket, not yet read by the peer. 0 for transports without a queue.
  virtual uint64_t QueuedBytes() const { return 0; }
  // Makes every blocked and future Send/Recv/WaitReadable return promptly. Idempotent, thread-safe.
  virtual void Shutdown() = 0;
  virtual const char* engine_name() const = 0;
  // engine_name() and the options the engine runs with (io_uring: which kernel features it got), for logs and
  // benchmark labels.
  virtual std::string engine_detail() const { return engine_name(); }
};

// Which engine drives a socket Transport. kPoll is readiness based (non-blocking socket + poll(2)), kIoUring
// submits the sends and receives to an io_uring; kAuto picks io_uring when the kernel and RLIMIT_MEMLOCK allow
// it and falls back (with a log line) otherwise.
enum class IoEngine { kAuto, kIoUring, kPoll };
// Accepts "auto", "io_uring", "epoll" and "poll" (the last two are the same readiness engine).
Result<IoEngine> ParseIoEngine(std::string_view name);
const char* IoEngineName(IoEngine engine);

// Wraps a connected stream socket (TCP or unix). Sets it non-blocking, and TCP_NODELAY on TCP.
Result<std::unique_ptr<Transport>> MakeSocketTransport(UniqueFd socket, IoEngine engine);

// A file as a transport: Send appends to it, Recv reads it from the start. Never times out (files do not
// block); Recv at the end of the file behaves as the end of a stream.
std::unique_ptr<Transport> MakeFileTransport(UniqueFd file);
// Bytes in memory as a read-only transport (Send fails): replaying a captured stream in tests.
std::unique_ptr<Transport> MakeMemoryTransport(std::span<const uint8_t> bytes);

// Stream addresses, accepted by ListenStream and ConnectStream: common/net_address.h's grammar ("host:port",
// "[v6]:port", "unix:/path.sock"); names are resolved (IPv4). Port 0: any free port.
// Ok when `address` is one of those forms (for checking configuration before anything connects).
Status CheckStreamAddress(const std::string& address);
// A listening socket (close-on-exec; TCP: SO_REUSEADDR). `*port` receives the bound TCP port (0 for unix).
// Unix: a socket file left behind by a listener that is gone (nobody accepts on it) is replaced, a live one is
// EADDRINUSE. The file is not removed when the listener closes: the owner removes it (RemoveUnixSocket), or the
// next ListenStream on the path replaces it.
Result<UniqueFd> ListenStream(const std::string& address, int* port);
// A connected socket; Timeout when the connect does not complete within timeout_ms.
Result<UniqueFd> ConnectStream(const std::string& address, int timeout_ms);
// Removes the socket file of a "unix:" address (if it is a socket); nothing for TCP addresses.
void RemoveUnixSocket(const std::string& address);

// Where framed records go. The encoder hands over complete records in stream order.
class EpochSink {
 public:
  virtual ~EpochSink() = default;
  virtual Status WriteRecord(std::span<const uint8_t> record) = 0;
  // Everything written so far must be on its way (end of an epoch, of a hello).
  virtual Status Flush() = 0;
};

class RecordCipher;  // link_security.h

// Coalesces small records into one send; large records go out directly without a copy. With a cipher (an
// authenticated link, link_security.h) every record is sealed on its way: its tag follows it, and under
// encryption the record is encrypted into the coalescing buffer (sized for the largest record once: sealing
// allocates nothing).
class TransportSink final : public EpochSink {
 public:
  TransportSink(Transport* transport, int timeout_ms, RecordCipher* cipher = nullptr);
  Status WriteRecord(std::span<const uint8_t> record) override;
  Status Flush() override;
  // Bytes on the wire (tags included).
  uint64_t bytes_sent() const { return bytes_sent_; }
  // Time spent in Transport::Send (waiting for the link, or copying into the kernel), since construction.
  uint64_t send_ns() const { return send_ns_; }

 private:
  Status Send(std::span<const iovec> iov);
  Status WriteEncrypted(std::span<const uint8_t> record);
  void Append(std::span<const uint8_t> bytes);
  Transport* transport_;
  int timeout_ms_;
  RecordCipher* cipher_;
  std::unique_ptr<uint8_t[]> buffer_;  // not a vector: encrypting into it must not zero it first
  size_t buffered_ = 0;
  size_t capacity_ = 0;
  uint64_t bytes_sent_ = 0;
  uint64_t send_ns_ = 0;
};

// Hands the framed records in `records` (complete records, back to back, as AppendRecord makes them) to `sink`
// one by one, so that a sealing sink tags each, then flushes.
Status WriteRecords(std::span<const uint8_t> records, EpochSink* sink);

// Keeps the records in memory (tests, and epochs encoded before they are sent).
class BufferSink final : public EpochSink {
 public:
  Status WriteRecord(std::span<const uint8_t> record) override {
    bytes.insert(bytes.end(), record.begin(), record.end());
    return Status::Ok();
  }
  Status Flush() override { return Status::Ok(); }
  std::vector<uint8_t> bytes;
};

// One record as read: the payload stays valid until the next Next().
struct RecordView {
  uint32_t type = 0;
  uint64_t checksum = 0;
  std::span<const uint8_t> payload;
};

// Reads framed records from a Transport and checks their framing: a length above kMaxRecordPayload is refused
// before anything is allocated (Corruption, kBadLength), a checksum mismatch is Corruption (kChecksumMismatch),
// a stream that ends between records is Closed("end of stream") (kNone), inside one Closed("truncated record")
// (kTruncated). Transport failures (timeouts, shutdown) pass through with kNone. With a cipher (an authenticated
// link) each record's tag is read with it and checked before anything else (Corruption, kTagMismatch), and an
// encrypted record is decrypted in place.
class RecordReader {
 public:
  explicit RecordReader(Transport* transport, RecordCipher* cipher = nullptr)
      : transport_(transport), cipher_(cipher) {}
  // Waits up to idle_timeout_ms (< 0: forever) for a record to start, then up to io_timeout_ms per read.
  DecodeStatus Next(int idle_timeout_ms, int io_timeout_ms, RecordView* record);
  uint64_t bytes_read() const { return bytes_read_; }

 private:
  Transport* transport_;
  RecordCipher* cipher_;
  std::vector<uint8_t> payload_;
  uint64_t bytes_read_ = 0;
};

}  // namespace tandem::replicator
