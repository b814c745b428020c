#include "heartbeat/witness_server.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include "common/fd.h"
#include "common/key_file.h"
#include "common/log.h"
#include "common/random.h"
#include "common/waker.h"
#include "heartbeat/udp.h"

namespace tandem::heartbeat {
namespace {

constexpr const char* kLog = "witness";

}  // namespace

struct WitnessServer::Impl {
  Impl(WitnessOptions o, Env* e) : options(std::move(o)), env(e), clock(e->clock()) {}
  // The Clock-only constructor's environment: the host's, on the caller's clock.
  Impl(WitnessOptions o, Clock* c)
      : options(std::move(o)), own_env(std::in_place, Env::Default(), c), env(&*own_env), clock(c) {}

  void Run();

  const WitnessOptions options;
  std::optional<EnvWrapper> own_env;
  Env* const env;
  Clock* const clock;
  UniqueFd fd, lock_fd;
  Waker wake;
  int port = 0;
  std::thread thread;
  std::atomic<bool> stop{false};
  bool started = false;
  std::mutex wait_mu;
  std::condition_variable stopped_cv;
  bool stopped = false;  // guarded by wait_mu
  mutable std::mutex mu;
  std::optional<WitnessCore> core;  // guarded by mu
};

void WitnessServer::Impl::Run() {
  pollfd fds[2] = {{fd.get(), POLLIN, 0}, {wake.fd(), POLLIN, 0}};
  uint8_t in[kWitnessMessageSize + 1];
  uint8_t out[kWitnessMessageSize];
  while (!stop.load()) {
    // This thread answers every lease request: if it hangs, systemd restarts the witness (terms are on disk).
    options.notifier->Watchdog();
    const int ready = ::poll(fds, 2, 1000);
    if (ready < 0 && errno != EINTR) {
      TLOG_ERROR(kLog, "poll: %s", strerror(errno));
      clock->SleepNanos(1'000'000);
      continue;
    }
    if (stop.load()) break;
    for (int n = 0; n < 256; ++n) {
      sockaddr_storage from{};
      socklen_t from_len = sizeof(from);
      const ssize_t got = recvfrom(fd.get(), in, sizeof(in), MSG_TRUNC | MSG_DONTWAIT,
                                   reinterpret_cast<sockaddr*>(&from), &from_len);
      if (got < 0) {
        if (errno == EINTR) continue;
        break;  // EAGAIN, or a queued ICMP error about an earlier reply: nothing to decide
      }
      const size_t len = std::min<size_t>(size_t(got), sizeof(in));  // longer datagrams stay a bad length
      size_t reply_len;
      {
        std::lock_guard<std::mutex> lock(mu);
        reply_len = core->OnDatagram(std::span<const uint8_t>(in, len), clock->NowNanos(), out);
      }
      if (reply_len > 0) {
        ssize_t sent;
        do {
          sent = sendto(fd.get(), out, reply_len, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), from_len);
        } while (sent < 0 && errno == EINTR);
      }
    }
    if (fds[1].revents & POLLIN) wake.Drain();
  }
}

WitnessServer::WitnessServer(WitnessOptions options, Env* env)
    : impl_(std::make_unique<Impl>(std::move(options), env)) {}

WitnessServer::WitnessServer(WitnessOptions options, Clock* clock)
    : impl_(std::make_unique<Impl>(std::move(options), clock)) {}

WitnessServer::~WitnessServer() { Stop(); }

Status WitnessServer::Start() {
  Impl& s = *impl_;
  if (s.started) return Status::InvalidArgument("witness: already started");
  const WitnessOptions& o = s.options;
  if (o.psk.empty()) return Status::InvalidArgument("witness: a pre-shared key is required");
  TANDEM_RETURN_IF_ERROR(CheckKeyLength(o.psk, "witness: the pre-shared key"));
  if (o.state_path.empty()) return Status::InvalidArgument("witness: a state file path is required");
  if (o.lease_ms < 1 || o.max_vms < 1) return Status::InvalidArgument("witness: need lease_ms >= 1 and max_vms >= 1");
  auto key = MacKey::Create(o.psk);
  if (!key.ok()) return key.status();
  auto local = ParseAddress(o.listen_address, /*allow_port_zero=*/true);
  if (!local.ok()) return local.status().WithContext("witness listen_address");

  const std::string lock_path = o.state_path + ".lock";
  auto lock_fd = s.env->LockFile(lock_path);
  if (!lock_fd.ok()) {
    return lock_fd.status().WithContext("witness: cannot lock the state (does another witness run on it?)");
  }
  TANDEM_ASSIGN_OR_RETURN(WitnessTable table, LoadWitnessState(o.state_path, s.env));
  TANDEM_ASSIGN_OR_RETURN(UniqueFd fd, OpenUdpSocket(*local, "witness"));
  TANDEM_RETURN_IF_ERROR(s.wake.Open("witness"));

  WitnessCore::Options core_options;
  core_options.lease_ns = int64_t(o.lease_ms) * 1'000'000;
  core_options.startup_hold_ns = int64_t(std::max(o.startup_hold_ms, o.lease_ms)) * 1'000'000;
  core_options.max_vms = o.max_vms;
  core_options.incarnation = RandomNonZeroId(s.clock);
  const size_t loaded = table.size();
  for (const auto& [name, vm] : table) {
    TLOG_INFO(kLog, "vm %s: term %" PRIu64 " held by %s (from %s); no holder change for %d ms", name.c_str(), vm.term,
              vm.holder.c_str(), o.state_path.c_str(), std::max(o.startup_hold_ms, o.lease_ms));
  }
  const std::string path = o.state_path;
  Env* const env = s.env;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.core.emplace(core_options, std::move(key).value(), std::move(table), s.clock->NowNanos(),
                   [path, env](const WitnessTable& t) { return SaveWitnessState(path, t, env); });
  }
  s.fd = std::move(fd);
  s.lock_fd = std::move(lock_fd).value();
  s.port = BoundPort(s.fd.get());
  s.started = true;
  TLOG_INFO(kLog, "witness (incarnation %016" PRIx64 ") on UDP port %d, lease %d ms, state %s (%zu VMs)",
            core_options.incarnation, s.port, o.lease_ms, o.state_path.c_str(), loaded);
  s.thread = std::thread([&s] { s.Run(); });
  pthread_setname_np(s.thread.native_handle(), "tandem-witness");
  return Status::Ok();
}

int WitnessServer::port() const { return impl_->port; }

void WitnessServer::Stop() {
  Impl& s = *impl_;
  s.stop.store(true);
  s.wake.Wake();
  if (s.thread.joinable()) {
    s.thread.join();
    s.fd.reset();
    s.lock_fd.reset();
    TLOG_INFO(kLog, "witness stopped");
  }
  {
    std::lock_guard<std::mutex> lock(s.wait_mu);
    s.stopped = true;
  }
  s.stopped_cv.notify_all();
}

void WitnessServer::Wait() {
  Impl& s = *impl_;
  std::unique_lock<std::mutex> lock(s.wait_mu);
  s.stopped_cv.wait(lock, [&s] { return s.stopped || !s.started; });
}

WitnessVmState WitnessServer::state(std::string_view vm) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (!impl_->core) return {};
  return impl_->core->state(vm, impl_->clock->NowNanos());
}

WitnessCounters WitnessServer::counters() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (!impl_->core) return {};
  return impl_->core->counters();
}

Status RunWitnessDaemon(const WitnessOptions& options, const std::function<bool()>& stop_requested, Env* env,
                        const WitnessServingHook& serving) {
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  if (!stop_requested) pthread_sigmask(SIG_BLOCK, &set, &old);  // before the server thread inherits the mask
  WitnessServer server(options, env);
  Status st = server.Start();
  if (st.ok()) {
    options.notifier->Status("witness on UDP port " + std::to_string(server.port()) + ", lease " +
                             std::to_string(options.lease_ms) + " ms, state " + options.state_path);
    options.notifier->Ready();
    if (serving) serving(&server);
    for (;;) {
      if (stop_requested) {
        if (stop_requested()) break;
        env->clock()->SleepNanos(100'000'000);
      } else {
        const timespec tick{0, 100'000'000};
        const int sig = sigtimedwait(&set, nullptr, &tick);
        if (sig == SIGINT || sig == SIGTERM) {
          TLOG_WARN(kLog, "received %s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
          break;
        }
      }
    }
    if (serving) serving(nullptr);
    server.Stop();
  }
  if (!stop_requested) pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return st;
}

}  // namespace tandem::heartbeat
