#include "replicator/receiver.h"

#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cinttypes>

#include "common/log.h"

namespace tandem::replicator {
namespace {

constexpr int kIdlePollMs = 100;
constexpr int kLingerMs = 1000;

ReplicaOptions ToReplicaOptions(const ReceiverOptions& o) {
  ReplicaOptions r;
  r.file_backed_blocks = o.file_backed_blocks;
  r.expected_vm_name = o.expected_vm_name;
  r.apply_threads = o.apply_threads;
  r.debug_apply_delay_ms = o.debug_apply_delay_ms;
  r.disk = o.disk;
  r.page_hashes = o.page_hashes;
  return r;
}

}  // namespace

EpochReceiver::EpochReceiver(ReceiverOptions options, Clock* clock)
    : options_(std::move(options)), clock_(clock), replica_(ToReplicaOptions(options_), clock) {}

EpochReceiver::~EpochReceiver() { Stop(); }

Status EpochReceiver::Start() {
  if (thread_.joinable() || stopped_) return Status::InvalidArgument("receiver already started");
  TANDEM_RETURN_IF_ERROR(CheckLinkSecurity(options_.security, "the replication key"));
  TANDEM_ASSIGN_OR_RETURN(listen_fd_, ListenStream(options_.listen_address, &port_));
  TANDEM_RETURN_IF_ERROR(wake_.Open("receiver"));
  TLOG_INFO("receiver", "listening for the primary on %s (port %d), link authenticated, encryption %s",
            options_.listen_address.c_str(), port_, LinkEncryptionName(options_.security.encryption));
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void EpochReceiver::Stop() {
  if (stopped_) return;
  stopped_ = true;
  stop_.store(true);
  wake_.Wake();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (current_ != nullptr) current_->Shutdown();
  }
  if (thread_.joinable()) thread_.join();
  listen_fd_.reset();
  std::lock_guard<std::mutex> lock(mu_);
  connected_ = false;
}

ReceiverStats EpochReceiver::stats() const {
  const ReplicaCounters c = replica_.counters();
  ReceiverStats s;
  s.last_applied = c.last_applied;
  s.epochs_applied = c.epochs_applied;
  s.epochs_rejected = c.epochs_rejected;
  s.last_apply_ms = c.last_apply_ms;
  s.last_rejection = c.last_rejection;
  s.disk_writes_applied = c.disk_writes_applied;
  s.disk_bytes_applied = c.disk_bytes_applied;
  s.disk_needs_recovery = c.disk_needs_recovery;
  s.has_resume_point = c.has_resume_point;
  std::lock_guard<std::mutex> lock(mu_);
  s.primary_connected = connected_;
  s.bytes_received = bytes_received_;
  s.last_error = last_error_;
  s.connections_refused = connections_refused_;
  s.last_refusal = last_refusal_;
  return s;
}

bool EpochReceiver::NewConnectionPending() {
  pollfd p{listen_fd_.get(), POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

void EpochReceiver::Loop() {
  while (!stop_.load()) {
    pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {wake_.fd(), POLLIN, 0}};
    int n = ::poll(fds, 2, -1);
    if (n < 0 && errno != EINTR) {
      TLOG_ERROR("receiver", "poll: %s", strerror(errno));
      return;
    }
    if (stop_.load()) return;
    if (n <= 0 || (fds[0].revents & POLLIN) == 0) continue;
    UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd.valid()) continue;
    auto transport = MakeSocketTransport(std::move(fd), options_.io_engine);
    if (!transport.ok()) {
      TLOG_ERROR("receiver", "cannot serve a connection: %s", transport.status().ToString().c_str());
      continue;
    }
    Serve(std::move(transport).value());
  }
}

void EpochReceiver::Serve(std::unique_ptr<Transport> transport) {
  Transport* t = transport.get();
  {
    std::lock_guard<std::mutex> lock(mu_);
    current_ = t;
    connected_ = true;
  }
  if (stop_.load()) t->Shutdown();  // Stop() ran before current_ was published
  SecureLink link;
  if (!Authenticate(t, &link)) {
    std::lock_guard<std::mutex> lock(mu_);
    current_ = nullptr;
    connected_ = false;
    return;
  }
  replica_.StartSession();
  RecordReader reader(t, link.receive.get());
  TransportSink replies(t, options_.io_timeout_ms, link.send.get());
  std::vector<uint8_t> reply;
  uint64_t counted = 0;
  std::string ended;  // why the connection ended, when it is worth reporting
  while (!stop_.load()) {
    Status waited = t->WaitReadable(kIdlePollMs);
    if (waited.IsTimeout()) {
      if (NewConnectionPending()) {
        ended = "replaced by a new connection from the primary";
        TLOG_WARN("receiver", "a new primary connection is waiting: dropping the current one");
        break;
      }
      continue;
    }
    RecordView rec;
    reply.clear();
    DecodeStatus st = waited.ok() ? reader.Next(options_.io_timeout_ms, options_.io_timeout_ms, &rec)
                                  : DecodeStatus(waited);
    {
      std::lock_guard<std::mutex> lock(mu_);
      bytes_received_ += reader.bytes_read() - counted;
    }
    counted = reader.bytes_read();
    if (!st.ok()) {
      if (stop_.load()) break;
      replica_.OnStreamError(st, &reply);
      // A primary that closes between records is not an error worth reporting.
      if (!(st.status().IsClosed() && st.status().message() == "end of stream")) ended = st.ToString();
      if (!reply.empty()) {
        WriteRecords(reply, &replies).ok();
        Linger(t);
      } else {
        TLOG_INFO("receiver", "primary connection ended: %s", st.ToString().c_str());
      }
      break;
    }
    st = replica_.OnRecord(rec, &reply);
    if (!reply.empty()) {
      Status sent = WriteRecords(reply, &replies);
      if (!sent.ok() && st.ok()) {
        if (!stop_.load()) TLOG_WARN("receiver", "cannot answer the primary: %s", sent.ToString().c_str());
        ended = sent.ToString();
        break;
      }
    }
    if (!st.ok()) {
      ended = st.ToString();
      Linger(t);
      break;
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  current_ = nullptr;
  connected_ = false;
  if (!ended.empty()) last_error_ = ended;
}

bool EpochReceiver::Authenticate(Transport* t, SecureLink* link) {
  std::vector<uint8_t> refusal;
  const DecodeStatus st = HandshakeAsStandby(t, options_.security, options_.io_timeout_ms, link, &refusal);
  if (st.ok()) return true;
  if (stop_.load()) return false;
  TLOG_WARN("receiver", "refused a primary connection in the link handshake (%s): %s",
            DecodeErrorName(st.error()), st.ToString().c_str());
  if (!refusal.empty()) {
    iovec iov{refusal.data(), refusal.size()};
    t->Send({&iov, 1}, options_.io_timeout_ms).ok();
    Linger(t);
  }
  std::lock_guard<std::mutex> lock(mu_);
  connections_refused_++;
  last_refusal_ = st.error();
  last_error_ = st.ToString();
  return false;
}

void EpochReceiver::Linger(Transport* t) {
  RecordReader drain(t);
  RecordView rec;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kLingerMs);
  while (!stop_.load() && std::chrono::steady_clock::now() < deadline) {
    Status st = drain.Next(50, 200, &rec);
    if (!st.ok() && !st.IsTimeout() && !st.IsCorruption()) return;  // closed (what we wait for) or broken
  }
}

}  // namespace tandem::replicator
