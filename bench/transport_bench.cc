// Replication transport over loopback: the io_uring engine beside the poll fallback, in one run, with the same
// record sizes, the same process layout (sender on the benchmark thread, receiver on a second thread) and the
// same code on both ends (replicator::MakeSocketTransport, TransportSink on the sending side, RecordReader with
// its checksum check on the receiving side). Names carry "uring" or "poll": scripts/bench matches on them.
//
//   BM_Stream/<tcp|unix>/<uring|poll>/record_kib:N   epochs of 8 PAGES records of N KiB each (1031 KiB = 256
//       raw pages, the largest PAGES record; 309 KiB = the same at a 0.3 wire ratio), each record leaving as one
//       gathered send (TransportSink: buffered small records + the large one), EPOCH_END, Flush; the receiver
//       ACKs every epoch and at most two epochs are unacknowledged (the shipper's default max_in_flight).
//   BM_AckRoundTrip/<tcp|unix>/<uring|poll>   one small EPOCH_END-sized record there, one ACK back: latency.
// Connections are made with ListenStream/ConnectStream: 127.0.0.1 for tcp, "unix:/tmp/..." for unix. The label of
// each row names the engine and the options it runs with (io_uring: which kernel features it got);
// TANDEM_URING_OFF=defer_taskrun,fixed_buffer,waitall,readahead switches io_uring features off to see
// what each is worth.
//
// Threads are pinned, sender and receiver on different CPUs, when the process may run on two or more
// (TANDEM_BENCH_PIN=0 turns that off). Under `taskset -c 0` both share one CPU and the figures measure context
// switches, not the transport.
#include <benchmark/benchmark.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "replicator/format.h"
#include "replicator/messages.h"
#include "replicator/transport.h"

namespace tandem::bench {
namespace {

using replicator::IoEngine;
using replicator::RecordType;
using replicator::Transport;

constexpr int kIoTimeoutMs = 10'000;
constexpr int kRecordsPerEpoch = 8;
constexpr int kMaxInFlight = 2;

enum class Family { kTcp, kUnix };

// ---------------------------------------------------------------------------------------------------------------
// CPU pinning: sender on the first CPU the process may use, receiver on the second.

std::vector<int> AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

// The CPUs the process was started with (before any pinning of the main thread).
const std::vector<int>& StartCpus() {
  static const std::vector<int> cpus = AllowedCpus();
  return cpus;
}

bool PinWanted() {
  const char* env = std::getenv("TANDEM_BENCH_PIN");
  return StartCpus().size() >= 2 && !(env != nullptr && std::string(env) == "0");
}

void PinSelf(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

void UnpinSelf() {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : StartCpus()) CPU_SET(c, &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

// ---------------------------------------------------------------------------------------------------------------
// Connected pairs.

struct Pair {
  std::unique_ptr<Transport> sender, receiver;
};

Result<std::pair<UniqueFd, UniqueFd>> ConnectedSockets(Family family) {
  // The same listen/connect path as the shipper and the receiver ("unix:/path" or "host:port").
  const std::string unix_address = "unix:/tmp/tandem-transport-bench." + std::to_string(getpid()) + ".sock";
  int port = 0;
  TANDEM_ASSIGN_OR_RETURN(UniqueFd listener,
                          replicator::ListenStream(family == Family::kUnix ? unix_address : "127.0.0.1:0", &port));
  Result<UniqueFd> client = replicator::ConnectStream(
      family == Family::kUnix ? unix_address : "127.0.0.1:" + std::to_string(port), 2000);
  UniqueFd server;
  if (client.ok()) server.reset(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  const int accept_errno = errno;
  replicator::RemoveUnixSocket(unix_address);
  if (!client.ok()) return client.status();
  if (!server.valid()) return Status::FromErrno("accept", accept_errno);
  return std::make_pair(std::move(client).value(), std::move(server));
}

// Both ends on `engine`. A missing io_uring is an error here, never a silent fallback: the comparison would lie.
Result<Pair> MakePair(Family family, IoEngine engine) {
  TANDEM_ASSIGN_OR_RETURN(auto fds, ConnectedSockets(family));
  Pair p;
  TANDEM_ASSIGN_OR_RETURN(p.sender, replicator::MakeSocketTransport(std::move(fds.first), engine));
  TANDEM_ASSIGN_OR_RETURN(p.receiver, replicator::MakeSocketTransport(std::move(fds.second), engine));
  const std::string want = engine == IoEngine::kIoUring ? "io_uring" : "poll";
  if (p.sender->engine_name() != want || p.receiver->engine_name() != want) {
    return Status::Unsupported(std::string("asked for ") + want + ", got " + p.sender->engine_name());
  }
  return p;
}

bool SetUp(benchmark::State& state, Family family, IoEngine engine, Pair* pair) {
  Result<Pair> p = MakePair(family, engine);
  if (!p.ok()) {
    const std::string why = std::string(engine == IoEngine::kIoUring ? "IO_URING UNAVAILABLE, NOT MEASURED: "
                                                                     : "cannot set up the poll transport: ") +
                            p.status().ToString();
    fprintf(stderr, "transport_bench: %s\n", why.c_str());
    state.SkipWithError(why.c_str());
    return false;
  }
  *pair = std::move(p).value();
  // Which engine and options were measured, in the output and once on stderr per engine.
  const std::string detail = pair->sender->engine_detail();
  state.SetLabel(detail);
  static std::string printed[2];
  std::string& seen = printed[engine == IoEngine::kIoUring ? 1 : 0];
  if (seen != detail) {
    fprintf(stderr, "transport_bench: engine %s\n", detail.c_str());
    seen = detail;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------------------------
// Records.

std::vector<uint8_t> MakeRecord(RecordType type, size_t payload_bytes, uint64_t seed) {
  std::vector<uint8_t> payload(payload_bytes);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i + 8 <= payload.size(); i += 8) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    memcpy(&payload[i], &x, 8);
  }
  std::vector<uint8_t> record;
  replicator::AppendRecord(type, payload, &record);
  return record;
}

std::vector<uint8_t> AckRecord(uint64_t epoch) {
  std::vector<uint8_t> payload, record;
  replicator::SerializeAck({epoch, replicator::AckStatus::kOk, ""}, &payload);
  replicator::AppendRecord(RecordType::kAck, payload, &record);
  return record;
}

// The standby's side: reads records (framing and checksum checked), ACKs every EPOCH_END, until end of stream.
class Receiver {
 public:
  Receiver(Transport* transport, int cpu) : transport_(transport) {
    thread_ = std::thread([this, cpu] {
      if (cpu >= 0) PinSelf(cpu);
      Run();
    });
  }
  // The sender must have shut its end down first.
  Status Join() {
    thread_.join();
    return status_;
  }

 private:
  void Run() {
    replicator::RecordReader reader(transport_);
    replicator::RecordView rec;
    std::vector<uint8_t> ack = AckRecord(0);
    uint64_t epoch = 0;
    for (;;) {
      Status st = reader.Next(kIoTimeoutMs, kIoTimeoutMs, &rec);
      if (st.IsClosed() && st.ToString().find("end of stream") != std::string::npos) return;
      if (!st.ok()) {
        status_ = st;
        return;
      }
      if (rec.type == uint32_t(RecordType::kEpochEnd)) {
        // The payload of a real ACK differs per epoch; the bytes and the path are the same.
        iovec iov{ack.data(), ack.size()};
        if (st = transport_->Send({&iov, 1}, kIoTimeoutMs); !st.ok()) {
          status_ = st;
          return;
        }
        ++epoch;
      }
    }
  }

  Transport* transport_;
  Status status_;
  std::thread thread_;
};

// Layout for one run: pins the benchmark thread and starts the receiver on the other CPU.
struct Layout {
  int sender_cpu = -1, receiver_cpu = -1;
  Layout() {
    if (PinWanted()) {
      sender_cpu = StartCpus()[0];
      receiver_cpu = StartCpus()[1];
      PinSelf(sender_cpu);
    }
  }
  ~Layout() {
    if (sender_cpu >= 0) UnpinSelf();
  }
};

// CPU time of the whole process (sender, receiver and anything the kernel charges to them): what an engine
// costs per byte, steadier than throughput on a machine shared with other work.
double ProcessCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

void Finish(benchmark::State& state, Pair& pair, Receiver& receiver, const Layout& layout) {
  pair.sender->Shutdown();
  Status st = receiver.Join();
  if (!st.ok() && !state.error_occurred()) state.SkipWithError(("receiver: " + st.ToString()).c_str());
  state.counters["pinned"] = layout.sender_cpu >= 0 ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------------------------

void BM_Stream(benchmark::State& state, Family family, IoEngine engine) {
  const size_t record_bytes = size_t(state.range(0)) * 1024;
  Layout layout;
  Pair pair;
  if (!SetUp(state, family, engine, &pair)) return;
  Receiver receiver(pair.receiver.get(), layout.receiver_cpu);

  std::vector<std::vector<uint8_t>> pages;
  for (int i = 0; i < kRecordsPerEpoch; ++i) pages.push_back(MakeRecord(RecordType::kPages, record_bytes - 16, i));
  const std::vector<uint8_t> begin = MakeRecord(RecordType::kEpochBegin, replicator::kEpochBeginSize, 100);
  const std::vector<uint8_t> end = MakeRecord(RecordType::kEpochEnd, replicator::kEpochEndSize, 101);
  uint64_t epoch_bytes = begin.size() + end.size();
  for (const auto& p : pages) epoch_bytes += p.size();

  replicator::TransportSink sink(pair.sender.get(), kIoTimeoutMs);
  replicator::RecordReader acks(pair.sender.get());
  replicator::RecordView rec;
  uint64_t sent = 0, acked = 0;
  Status st;
  const double cpu_start = ProcessCpuSeconds();
  for (auto _ : state) {
    // Bounded pipelining as the shipper does it: epoch n goes out while n-1 awaits its ack.
    while (sent - acked >= kMaxInFlight) {
      if (st = acks.Next(kIoTimeoutMs, kIoTimeoutMs, &rec); !st.ok()) break;
      ++acked;
    }
    if (!st.ok()) break;
    st = sink.WriteRecord(begin);
    for (size_t i = 0; st.ok() && i < pages.size(); ++i) st = sink.WriteRecord(pages[i]);
    if (st.ok()) st = sink.WriteRecord(end);
    if (st.ok()) st = sink.Flush();
    if (!st.ok()) break;
    ++sent;
  }
  // Whatever is still unacknowledged arrived after the clock stopped: at most two epochs of many.
  while (st.ok() && acked < sent) {
    if (st = acks.Next(kIoTimeoutMs, kIoTimeoutMs, &rec); st.ok()) ++acked;
  }
  if (!st.ok()) state.SkipWithError(("sender: " + st.ToString()).c_str());
  Finish(state, pair, receiver, layout);
  state.SetBytesProcessed(int64_t(sent * epoch_bytes));
  state.counters["records_per_epoch"] = kRecordsPerEpoch + 2;
  // Both threads' CPU per MiB moved (the tail of unacknowledged epochs included: a few of many).
  if (sent > 0) state.counters["cpu_ms_per_gib"] = (ProcessCpuSeconds() - cpu_start) * 1e3 / (double(sent * epoch_bytes) / (1 << 30));
}

// One small record there, the ACK back: what an epoch with little to send costs on top of its bytes.
void BM_AckRoundTrip(benchmark::State& state, Family family, IoEngine engine) {
  Layout layout;
  Pair pair;
  if (!SetUp(state, family, engine, &pair)) return;
  Receiver receiver(pair.receiver.get(), layout.receiver_cpu);
  const std::vector<uint8_t> end = MakeRecord(RecordType::kEpochEnd, replicator::kEpochEndSize, 7);
  const size_t ack_bytes = AckRecord(0).size();
  replicator::RecordReader acks(pair.sender.get());
  replicator::RecordView rec;
  Status st;
  const double cpu_start = ProcessCpuSeconds();
  for (auto _ : state) {
    iovec iov{const_cast<uint8_t*>(end.data()), end.size()};
    if (st = pair.sender->Send({&iov, 1}, kIoTimeoutMs); !st.ok()) break;
    if (st = acks.Next(kIoTimeoutMs, kIoTimeoutMs, &rec); !st.ok()) break;
  }
  if (!st.ok()) state.SkipWithError(("sender: " + st.ToString()).c_str());
  Finish(state, pair, receiver, layout);
  // bytes_per_second is kept (scripts/bench reads it from every uring/poll benchmark); the figure to read here
  // is the time per iteration, i.e. the round trip.
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(end.size() + ack_bytes));
  state.counters["round_trips"] = benchmark::Counter(double(state.iterations()), benchmark::Counter::kIsRate);
  if (state.iterations() > 0) state.counters["cpu_us_per_round_trip"] = (ProcessCpuSeconds() - cpu_start) * 1e6 / double(state.iterations());
}

void Register() {
  struct Variant {
    const char* name;
    Family family;
    IoEngine engine;
  };
  // Interleaved uring/poll so that a machine whose load changes during the run hurts both alike.
  const Variant variants[] = {
      {"tcp/uring", Family::kTcp, IoEngine::kIoUring},
      {"tcp/poll", Family::kTcp, IoEngine::kPoll},
      {"unix/uring", Family::kUnix, IoEngine::kIoUring},
      {"unix/poll", Family::kUnix, IoEngine::kPoll},
  };
  // 1031 KiB: a PAGES record of 256 raw pages (kMaxPagesPayload, a full epoch); 309 KiB: the same pages at the
  // 0.3 wire ratio of a delta epoch (above TransportSink's 256 KiB coalescing, so also sent without a copy).
  const int64_t kRawRecordKib = int64_t((replicator::kMaxPagesPayload + 16) / 1024);
  for (const int64_t kib : {kRawRecordKib, kRawRecordKib * 3 / 10}) {
    for (const Variant& v : variants) {
      benchmark::RegisterBenchmark((std::string("BM_Stream/") + v.name).c_str(), BM_Stream, v.family, v.engine)
          ->ArgName("record_kib")
          ->Arg(kib)
          ->UseRealTime();
    }
  }
  for (const Variant& v : variants) {
    benchmark::RegisterBenchmark((std::string("BM_AckRoundTrip/") + v.name).c_str(), BM_AckRoundTrip, v.family,
                                 v.engine)
        ->UseRealTime();
  }
}

}  // namespace
}  // namespace tandem::bench

int main(int argc, char** argv) {
  tandem::bench::StartCpus();
  tandem::bench::Register();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  fprintf(stderr, "transport_bench: %s\n",
          tandem::bench::PinWanted() ? "sender and receiver pinned to different CPUs"
                                     : "threads not pinned (one CPU allowed, or TANDEM_BENCH_PIN=0)");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
