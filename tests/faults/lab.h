// A network fault lab made of Linux network namespaces, built by the test itself (iproute2 + nftables):
//
//      primary ──data0──┐            ┌──data0── standby
//      primary ──data1──┤   router   ├──data1── standby
//      primary ──mgmt───┤ (forwards) ├───mgmt── standby
//                       └────mgmt────┘
//                              │
//                           witness
//
// Every host reaches the router through one veth per link, each link on its own subnets; the router forwards only
// between the same link of two hosts (data0 <-> data0, data1 <-> data1, mgmt of primary/standby <-> witness), so
// the links are really independent. The filesystem is shared (one machine): state dirs, QMP sockets and logs are
// plain paths; only the network differs per host.
//
// Faults, all applied in the router so the hosts see what a real network would do to them:
//   - a cut link: the router's end of the host's veth set down (the host sees carrier loss, as with a pulled cable)
//   - an isolated host: all its links cut
//   - packet loss: an nftables `numgen random` drop rule in the router's prerouting (every packet crosses it once)
//   - delay and jitter (this kernel has no netem qdisc): traffic to chosen endpoints is DNAT-ed to a relay process
//     (tests/faults/relay.cc) running in the router, which forwards it after delay ± jitter
//   - a flapping link: down/up on a bounded schedule by a lab thread
//
// Namespaces are named tdm-<pid>-<host> (unique per run). Create() first deletes namespaces of earlier runs whose
// process is gone (only the tdm- prefix, never a live run's); the destructor kills every process it started and
// every process still inside its namespaces (all started by this lab, directly or by its children), by pid, then
// deletes the namespaces -- also when a test assertion failed.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/fd.h"
#include "common/status.h"

namespace tandem::faults {

enum class Host { kPrimary = 0, kStandby = 1, kWitness = 2, kRouter = 3 };
enum class Link { kData0 = 0, kData1 = 1, kMgmt = 2 };

const char* HostName(Host host);
const char* LinkName(Link link);

// "" when this process can build a lab (root, `ip netns`, veth, nft); otherwise why not, for a loud skip.
std::string LabUnavailableReason();

// Realtime milliseconds (comparable with QMP event timestamps and other processes' wall clocks on this machine).
double WallMs();

enum class Proto { kUdp, kTcp };

class NetLab {
 public:
  // Builds the namespaces, veths, addresses, routes and the router's forwarding and nftables base rules.
  // `relay_binary`: path of tandem-fault-relay (needed only for AddRelayRoute/StartRelay).
  static Result<std::unique_ptr<NetLab>> Create(const std::string& relay_binary = "");
  ~NetLab();
  NetLab(const NetLab&) = delete;
  NetLab& operator=(const NetLab&) = delete;

  // Topology. Primary and standby have every link; the witness only mgmt; the router all of them.
  static bool HasLink(Host host, Link link);
  // The host's IPv4 address on `link` (no port), e.g. "10.1.1.1" for the primary on data0.
  static std::string Address(Host host, Link link);
  std::string Namespace(Host host) const;
  // A scratch directory owned by the lab (removed by the destructor unless TANDEM_KEEP_TEST_DIRS is set).
  const std::string& dir() const { return dir_; }

  // ---- processes ----
  // Starts argv in `host`'s namespace (stdout+stderr appended to `log_path`, cwd `cwd` when not empty). The child
  // dies with the calling thread (PR_SET_PDEATHSIG): call it from the test's main thread.
  Result<pid_t> Spawn(Host host, const std::vector<std::string>& argv, const std::string& log_path,
                      const std::string& cwd = "");
  // SIGKILL a process this lab spawned (and reap it) or one it was told about with Adopt().
  void Kill(pid_t pid);
  // A process started by one of ours (e.g. a QEMU started by tandem): killed by the destructor too.
  void Adopt(pid_t pid);
  // Whether `pid` exists and is not a zombie.
  static bool Alive(pid_t pid);
  // For a process this lab spawned: "" while it runs, else how it ended ("exit status 1", "killed by signal 11";
  // the child is reaped then, and remembered).
  std::string ExitDescription(pid_t pid);
  // A socket created inside `host`'s namespace (usable from any thread afterwards).
  Result<UniqueFd> Socket(Host host, int domain, int type);

  // ---- faults ----
  // Cut (up=false) or restore the host's link (the router's end of its veth).
  Status SetLinkUp(Host host, Link link, bool up);
  Status Isolate(Host host);    // every link of the host cut
  Status Reconnect(Host host);  // every link of the host restored
  // Drops `percent`% of the packets arriving at the router from the given host links (all host links when empty),
  // in both directions. percent 0 removes the rule.
  struct HostLink {
    Host host;
    Link link;
  };
  Status SetLoss(int percent, const std::vector<HostLink>& where = {});
  // Flaps the link in a lab thread: down for down_ms, up for up_ms, ..., for total_ms, then leaves it up.
  // One flapper at a time; returns at once. StopFlapping() (also called by the destructor) ends it early.
  Status StartFlapping(Host host, Link link, int down_ms, int up_ms, int total_ms);
  void StopFlapping();
  uint64_t flaps() const { return flaps_.load(); }

  // ---- relay (delay / jitter) ----
  // Before StartRelay(): traffic addressed to host's `link` address at `port` goes through the relay. Returns the
  // relay's listening address ("ip:port" inside the router).
  Result<std::string> AddRelayRoute(Proto proto, Host host, Link link, int port);
  // Starts the relay in the router (delay 0) and installs the DNAT rules for every route added.
  Status StartRelay();
  // Every relayed packet (UDP) or chunk (TCP, order kept) is held delay_ms ± jitter_ms (uniform); UDP datagrams
  // are also dropped with probability drop_pct% (in addition to SetLoss, which also applies to relayed traffic).
  Status SetRelay(int delay_ms, int jitter_ms, int drop_pct = 0);
  // The relay's counters ("udp_in=.. udp_out=.. ...").
  Result<std::string> RelayStats();

  // ---- helpers ----
  // Runs argv (no shell), capturing its output; non-zero exit is an error carrying the output.
  static Status Run(const std::vector<std::string>& argv, std::string* output = nullptr);
  // Runs `nft -f` on `script` inside `host`'s namespace.
  Status Nft(Host host, const std::string& script);

 private:
  NetLab() = default;
  Status Build();
  Status ApplyLink(Host host, Link link, bool up);
  Status RelayCommand(const std::string& line, std::string* reply);
  std::string RouterIfName(Host host, Link link) const;

  std::string prefix_;  // tdm-<pid>-<n>
  std::string dir_;
  std::string relay_binary_;
  std::vector<std::string> namespaces_;  // created, to delete
  std::mutex mu_;
  std::vector<pid_t> spawned_;  // our children: killed and reaped
  std::vector<pid_t> adopted_;  // started by our children: killed
  std::vector<std::pair<pid_t, std::string>> exited_;  // reaped by ExitDescription
  UniqueFd router_ctl_;         // AF_INET socket in the router ns: interface flag ioctls without fork/exec

  struct RelayRoute {
    Proto proto;
    std::string target;  // ip:port
    std::string ip;
    int port;
    int relay_port;
  };
  std::vector<RelayRoute> relay_routes_;
  pid_t relay_pid_ = -1;

  std::thread flapper_;
  std::atomic<bool> flap_stop_{false};
  std::atomic<uint64_t> flaps_{0};
};

}  // namespace tandem::faults
