#include "tests/faults/lab.h"

#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/net_address.h"

namespace tandem::faults {
namespace {

constexpr Host kHosts[] = {Host::kPrimary, Host::kStandby, Host::kWitness};
constexpr Link kLinks[] = {Link::kData0, Link::kData1, Link::kMgmt};
// The relay listens on this router-local address; DNAT sends relayed traffic to it.
constexpr char kRelayIp[] = "10.255.0.1";
constexpr int kRelayFirstPort = 20000;

std::atomic<int> g_lab_counter{0};

std::string HostLetter(Host host) { return std::string(1, HostName(host)[0]); }

// /run/netns/<name> opened for setns().
Result<UniqueFd> OpenNamespace(const std::string& name) {
  UniqueFd fd(::open(("/run/netns/" + name).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open netns " + name, errno);
  return fd;
}

std::string JoinArgs(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) out += (out.empty() ? "" : " ") + a;
  return out;
}

// The inode of a network namespace (what /proc/<pid>/ns/net links to as "net:[inode]").
ino_t NamespaceInode(const std::string& name) {
  struct stat st{};
  return ::stat(("/run/netns/" + name).c_str(), &st) == 0 ? st.st_ino : 0;
}

}  // namespace

const char* HostName(Host host) {
  switch (host) {
    case Host::kPrimary: return "primary";
    case Host::kStandby: return "standby";
    case Host::kWitness: return "witness";
    case Host::kRouter: return "router";
  }
  return "?";
}

const char* LinkName(Link link) {
  switch (link) {
    case Link::kData0: return "data0";
    case Link::kData1: return "data1";
    case Link::kMgmt: return "mgmt";
  }
  return "?";
}

double WallMs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) / 1e6;
}

std::string LabUnavailableReason() {
  static const std::string reason = [] {
    if (geteuid() != 0) return std::string("the fault lab needs root (network namespaces, veth, nftables); run as root");
    std::string out;
    if (!NetLab::Run({"ip", "netns", "list"}, &out).ok()) return "`ip netns` is unavailable (iproute2): " + out;
    if (!NetLab::Run({"nft", "--version"}, &out).ok()) return "`nft` is unavailable (nftables): " + out;
    const std::string probe = "tdm-" + std::to_string(getpid()) + "-probe";
    if (!NetLab::Run({"ip", "netns", "add", probe}, &out).ok()) return "cannot create a network namespace: " + out;
    std::string why;
    if (!NetLab::Run({"ip", "-n", probe, "link", "add", "name", "a", "type", "veth", "peer", "name", "b"}, &out).ok()) {
      why = "cannot create a veth pair: " + out;
    } else if (!NetLab::Run({"ip", "netns", "exec", probe, "nft", "add table inet probe; add chain inet probe c { type filter hook prerouting priority -300; }; add rule inet probe c numgen random mod 100 < 30 drop"},
                            &out)
                    .ok()) {
      why = "nftables cannot load a `numgen random` drop rule: " + out;
    }
    NetLab::Run({"ip", "netns", "del", probe}).ok();
    return why;
  }();
  return reason;
}

Status NetLab::Run(const std::vector<std::string>& argv, std::string* output) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return Status::FromErrno("pipe", errno);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    close(pipefd[0]), close(pipefd[1]);
    return Status::FromErrno("fork", errno);
  }
  if (pid == 0) {
    dup2(pipefd[1], 1);
    dup2(pipefd[1], 2);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(pipefd[1]);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(pipefd[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, size_t(n));
  }
  close(pipefd[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (output) *output = out;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Status::IoError("`" + JoinArgs(argv) + "` failed (status " + std::to_string(status) + "): " + out);
  }
  return Status::Ok();
}

bool NetLab::HasLink(Host host, Link link) {
  if (host == Host::kRouter) return true;
  if (host == Host::kWitness) return link == Link::kMgmt;
  return true;
}

std::string NetLab::Address(Host host, Link link) {
  // 10.<link+1>.<host+1>.1 for the host, .254 for the router's end of the same veth.
  return "10." + std::to_string(int(link) + 1) + "." + std::to_string(int(host) + 1) + ".1";
}

std::string NetLab::Namespace(Host host) const { return prefix_ + "-" + HostName(host); }

std::string NetLab::RouterIfName(Host host, Link link) const { return HostLetter(host) + "-" + LinkName(link); }

Result<std::unique_ptr<NetLab>> NetLab::Create(const std::string& relay_binary) {
  if (std::string why = LabUnavailableReason(); !why.empty()) return Status::Unsupported(why);
  // Sweep namespaces left by earlier runs that died before their destructor: only tdm-<pid>-..., only dead pids.
  if (DIR* d = opendir("/run/netns")) {
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name.rfind("tdm-", 0) != 0) continue;
      const pid_t owner = pid_t(std::strtol(name.c_str() + 4, nullptr, 10));
      if (owner <= 0 || owner == getpid()) continue;
      if (kill(owner, 0) == 0 || errno != ESRCH) continue;
      fprintf(stderr, "[lab] deleting stale namespace %s (its test process %d is gone)\n", name.c_str(), int(owner));
      Run({"ip", "netns", "del", name}).ok();
    }
    closedir(d);
  }
  std::unique_ptr<NetLab> lab(new NetLab());
  lab->relay_binary_ = relay_binary;
  lab->prefix_ = "tdm-" + std::to_string(getpid()) + "-" + std::to_string(g_lab_counter.fetch_add(1));
  char tmpl[] = "/tmp/tandem-faults.XXXXXX";
  if (!mkdtemp(tmpl)) return Status::FromErrno("mkdtemp", errno);
  lab->dir_ = tmpl;
  if (Status st = lab->Build(); !st.ok()) return st.WithContext("building the network lab");
  return lab;
}

Status NetLab::Build() {
  for (Host h : {Host::kPrimary, Host::kStandby, Host::kWitness, Host::kRouter}) {
    TANDEM_RETURN_IF_ERROR(Run({"ip", "netns", "add", Namespace(h)}));
    namespaces_.push_back(Namespace(h));
    TANDEM_RETURN_IF_ERROR(Run({"ip", "-n", Namespace(h), "link", "set", "lo", "up"}));
  }
  const std::string router = Namespace(Host::kRouter);
  for (Host h : kHosts) {
    for (Link l : kLinks) {
      if (!HasLink(h, l)) continue;
      const std::string host_if = LinkName(l), router_if = RouterIfName(h, l);
      const std::string addr = Address(h, l);
      const std::string gw = addr.substr(0, addr.rfind('.')) + ".254";
      const std::string net16 = "10." + std::to_string(int(l) + 1) + ".0.0/16";
      TANDEM_RETURN_IF_ERROR(Run({"ip", "link", "add", "name", host_if, "netns", Namespace(h), "type", "veth", "peer",
                                  "name", router_if, "netns", router}));
      TANDEM_RETURN_IF_ERROR(Run({"ip", "-n", Namespace(h), "addr", "add", addr + "/24", "dev", host_if}));
      TANDEM_RETURN_IF_ERROR(Run({"ip", "-n", router, "addr", "add", gw + "/24", "dev", router_if}));
      TANDEM_RETURN_IF_ERROR(Run({"ip", "-n", Namespace(h), "link", "set", host_if, "up"}));
      TANDEM_RETURN_IF_ERROR(Run({"ip", "-n", router, "link", "set", router_if, "up"}));
      // Everything on this link's /16 (the peer's and the witness's addresses on it) goes through this veth.
      TANDEM_RETURN_IF_ERROR(Run({"ip", "-n", Namespace(h), "route", "add", net16, "via", gw, "dev", host_if}));
    }
  }
  // A cut link drops carrier, which flushes ARP entries; packets sent meanwhile leave an unresolved entry that
  // the kernel re-probes only every retrans_time (1 s by default), so an 80 ms cut could last up to a second
  // after the link is back. Re-probing every 10 ms keeps outages as long as the test makes them.
  for (const auto& ns : namespaces_) {
    TANDEM_RETURN_IF_ERROR(Run({"ip", "netns", "exec", ns, "sh", "-c",
                                "for d in /proc/sys/net/ipv4/neigh/*/; do echo 10 > \"$d/retrans_time_ms\"; done"}));
  }
  TANDEM_RETURN_IF_ERROR(Run({"ip", "-n", router, "addr", "add", std::string(kRelayIp) + "/32", "dev", "lo"}));
  TANDEM_RETURN_IF_ERROR(
      Run({"ip", "netns", "exec", router, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"}));
  // Forward only between the same link of two hosts; mgmt only to and from the witness.
  std::string script =
      "table inet tdmlab {\n"
      "  chain loss { type filter hook prerouting priority -300; policy accept; }\n"
      "  chain allow { type filter hook forward priority 0; policy drop;\n";
  auto pair = [&](Host a, Host b, Link l) {
    script += "    iifname \"" + RouterIfName(a, l) + "\" oifname \"" + RouterIfName(b, l) + "\" accept\n";
    script += "    iifname \"" + RouterIfName(b, l) + "\" oifname \"" + RouterIfName(a, l) + "\" accept\n";
  };
  pair(Host::kPrimary, Host::kStandby, Link::kData0);
  pair(Host::kPrimary, Host::kStandby, Link::kData1);
  pair(Host::kPrimary, Host::kWitness, Link::kMgmt);
  pair(Host::kStandby, Host::kWitness, Link::kMgmt);
  script += "  }\n}\n";
  TANDEM_RETURN_IF_ERROR(Nft(Host::kRouter, script));
  TANDEM_ASSIGN_OR_RETURN(router_ctl_, Socket(Host::kRouter, AF_INET, SOCK_DGRAM));
  return Status::Ok();
}

Status NetLab::Nft(Host host, const std::string& script) {
  const std::string path = dir_ + "/nft-" + std::to_string(g_lab_counter.fetch_add(1)) + ".nft";
  {
    std::ofstream out(path);
    out << script;
    if (!out) return Status::IoError("cannot write " + path);
  }
  Status st = Run({"ip", "netns", "exec", Namespace(host), "nft", "-f", path});
  std::filesystem::remove(path);
  return st.ok() ? st : st.WithContext("nft script:\n" + script);
}

NetLab::~NetLab() {
  StopFlapping();
  std::vector<pid_t> spawned, adopted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    spawned = spawned_;
    adopted = adopted_;
  }
  for (pid_t pid : adopted) kill(pid, SIGKILL);
  for (pid_t pid : spawned) kill(pid, SIGKILL);
  for (pid_t pid : spawned) {
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  // Anything still inside our namespaces was started by our processes (the namespaces are unique to this lab).
  std::vector<ino_t> inodes;
  for (const auto& ns : namespaces_) inodes.push_back(NamespaceInode(ns));
  for (int round = 0; round < 20; ++round) {
    bool found = false;
    if (DIR* d = opendir("/proc")) {
      while (dirent* e = readdir(d)) {
        const pid_t pid = pid_t(std::strtol(e->d_name, nullptr, 10));
        if (pid <= 1 || pid == getpid()) continue;
        struct stat st{};
        if (::stat(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), &st) != 0) continue;
        if (std::find(inodes.begin(), inodes.end(), st.st_ino) == inodes.end() || st.st_ino == 0) continue;
        if (!Alive(pid)) continue;
        found = true;
        kill(pid, SIGKILL);
      }
      closedir(d);
    }
    if (!found) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (const auto& ns : namespaces_) {
    if (Status st = Run({"ip", "netns", "del", ns}); !st.ok()) fprintf(stderr, "[lab] %s\n", st.ToString().c_str());
  }
  if (!dir_.empty() && !std::getenv("TANDEM_KEEP_TEST_DIRS")) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

Result<pid_t> NetLab::Spawn(Host host, const std::vector<std::string>& argv, const std::string& log_path,
                            const std::string& cwd) {
  TANDEM_ASSIGN_OR_RETURN(UniqueFd ns, OpenNamespace(Namespace(host)));
  UniqueFd log(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!log.valid()) return Status::FromErrno("open " + log_path, errno);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = getpid();
  int errpipe[2];
  if (pipe2(errpipe, O_CLOEXEC) != 0) return Status::FromErrno("pipe", errno);
  const pid_t pid = fork();
  if (pid < 0) {
    close(errpipe[0]), close(errpipe[1]);
    return Status::FromErrno("fork", errno);
  }
  if (pid == 0) {
    // Only async-signal-safe calls from here to exec.
    auto fail = [&](int step) {
      int report[2] = {step, errno};
      ssize_t ignored = write(errpipe[1], report, sizeof(report));
      (void)ignored;
      _exit(127);
    };
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(1);
    if (getppid() != parent) _exit(127);
    if (setns(ns.get(), CLONE_NEWNET) != 0) fail(2);
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) fail(3);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(log.get(), 1) < 0 || dup2(log.get(), 2) < 0) fail(4);
    execv(args[0], args.data());
    fail(5);
  }
  close(errpipe[1]);
  int report[2] = {0, 0};
  ssize_t n = read(errpipe[0], report, sizeof(report));
  close(errpipe[0]);
  if (n == ssize_t(sizeof(report))) {
    waitpid(pid, nullptr, 0);
    static const char* steps[] = {"", "prctl", "setns", "chdir", "stdio", "exec"};
    return Status::FromErrno(std::string("spawn ") + JoinArgs(argv) + " in " + HostName(host) + ": " +
                                 steps[std::clamp(report[0], 0, 5)],
                             report[1]);
  }
  std::lock_guard<std::mutex> lock(mu_);
  spawned_.push_back(pid);
  return pid;
}

void NetLab::Kill(pid_t pid) {
  if (pid <= 0) return;
  bool ours = false, adopted = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ours = std::find(spawned_.begin(), spawned_.end(), pid) != spawned_.end();
    adopted = std::find(adopted_.begin(), adopted_.end(), pid) != adopted_.end();
  }
  if (!ours && !adopted) {
    fprintf(stderr, "[lab] refusing to kill pid %d: not started by this lab\n", int(pid));
    return;
  }
  kill(pid, SIGKILL);
  if (ours) {
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    std::lock_guard<std::mutex> lock(mu_);
    spawned_.erase(std::remove(spawned_.begin(), spawned_.end(), pid), spawned_.end());
  } else {
    // Not our child: its parent reaps it. Wait (bounded) until it is gone or a zombie.
    for (int i = 0; i < 200 && Alive(pid); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::string NetLab::ExitDescription(pid_t pid) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [p, how] : exited_) {
    if (p == pid) return how;
  }
  if (std::find(spawned_.begin(), spawned_.end(), pid) == spawned_.end()) return "not started by this lab";
  int status = 0;
  if (waitpid(pid, &status, WNOHANG) != pid) return "";
  std::string how = WIFEXITED(status)     ? "exit status " + std::to_string(WEXITSTATUS(status))
                    : WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                                          : "ended (status " + std::to_string(status) + ")";
  spawned_.erase(std::remove(spawned_.begin(), spawned_.end(), pid), spawned_.end());
  exited_.push_back({pid, how});
  return how;
}

void NetLab::Adopt(pid_t pid) {
  if (pid <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (std::find(adopted_.begin(), adopted_.end(), pid) == adopted_.end()) adopted_.push_back(pid);
}

bool NetLab::Alive(pid_t pid) {
  if (pid <= 0 || kill(pid, 0) != 0) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const size_t paren = line.rfind(')');
  return paren == std::string::npos || paren + 2 >= line.size() || line[paren + 2] != 'Z';
}

Result<UniqueFd> NetLab::Socket(Host host, int domain, int type) {
  TANDEM_ASSIGN_OR_RETURN(UniqueFd ns, OpenNamespace(Namespace(host)));
  // setns() changes only the calling thread: a short-lived thread makes the socket, which keeps its namespace.
  Result<UniqueFd> result = Status::IoError("unset");
  std::thread([&] {
    if (setns(ns.get(), CLONE_NEWNET) != 0) {
      result = Status::FromErrno(std::string("setns ") + HostName(host), errno);
      return;
    }
    UniqueFd fd(::socket(domain, type | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
      result = Status::FromErrno("socket", errno);
      return;
    }
    result = std::move(fd);
  }).join();
  return result;
}

Status NetLab::ApplyLink(Host host, Link link, bool up) {
  const std::string name = RouterIfName(host, link);
  ifreq ifr{};
  std::snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name.c_str());
  if (ioctl(router_ctl_.get(), SIOCGIFFLAGS, &ifr) != 0) return Status::FromErrno("SIOCGIFFLAGS " + name, errno);
  if (up) {
    ifr.ifr_flags = short(ifr.ifr_flags | IFF_UP);
  } else {
    ifr.ifr_flags = short(ifr.ifr_flags & ~IFF_UP);
  }
  if (ioctl(router_ctl_.get(), SIOCSIFFLAGS, &ifr) != 0) return Status::FromErrno("SIOCSIFFLAGS " + name, errno);
  return Status::Ok();
}

Status NetLab::SetLinkUp(Host host, Link link, bool up) {
  if (host == Host::kRouter || !HasLink(host, link)) {
    return Status::InvalidArgument(std::string(HostName(host)) + " has no link " + LinkName(link));
  }
  return ApplyLink(host, link, up);
}

Status NetLab::Isolate(Host host) {
  for (Link l : kLinks) {
    if (HasLink(host, l)) TANDEM_RETURN_IF_ERROR(SetLinkUp(host, l, false));
  }
  return Status::Ok();
}

Status NetLab::Reconnect(Host host) {
  for (Link l : kLinks) {
    if (HasLink(host, l)) TANDEM_RETURN_IF_ERROR(SetLinkUp(host, l, true));
  }
  return Status::Ok();
}

Status NetLab::SetLoss(int percent, const std::vector<HostLink>& where) {
  if (percent < 0 || percent > 100) return Status::InvalidArgument("loss percent out of range");
  std::string script = "flush chain inet tdmlab loss\n";
  if (percent > 0) {
    std::vector<std::string> ifs;
    if (where.empty()) {
      for (Host h : kHosts) {
        for (Link l : kLinks) {
          if (HasLink(h, l)) ifs.push_back(RouterIfName(h, l));
        }
      }
    } else {
      for (const HostLink& hl : where) ifs.push_back(RouterIfName(hl.host, hl.link));
    }
    std::string set;
    for (const auto& i : ifs) set += (set.empty() ? "" : ", ") + ("\"" + i + "\"");
    // Every packet crossing the router enters prerouting exactly once (forwarded or delivered to the relay).
    script += "add rule inet tdmlab loss iifname { " + set + " } numgen random mod 100 < " +
              std::to_string(percent) + " drop\n";
  }
  return Nft(Host::kRouter, script);
}

Status NetLab::StartFlapping(Host host, Link link, int down_ms, int up_ms, int total_ms) {
  if (down_ms <= 0 || up_ms <= 0 || total_ms <= 0) return Status::InvalidArgument("flap periods must be positive");
  if (!HasLink(host, link) || host == Host::kRouter) return Status::InvalidArgument("no such link");
  StopFlapping();
  flap_stop_ = false;
  flapper_ = std::thread([this, host, link, down_ms, up_ms, total_ms] {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(total_ms);
    auto next = std::chrono::steady_clock::now();
    bool up = true;
    while (!flap_stop_ && std::chrono::steady_clock::now() < end) {
      up = !up;
      if (!ApplyLink(host, link, up).ok()) break;
      if (!up) flaps_.fetch_add(1);
      next += std::chrono::milliseconds(up ? up_ms : down_ms);
      while (!flap_stop_ && std::chrono::steady_clock::now() < std::min(next, end)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    ApplyLink(host, link, true).ok();
  });
  return Status::Ok();
}

void NetLab::StopFlapping() {
  flap_stop_ = true;
  if (flapper_.joinable()) flapper_.join();
}

Result<std::string> NetLab::AddRelayRoute(Proto proto, Host host, Link link, int port) {
  if (relay_pid_ > 0) return Status::InvalidArgument("AddRelayRoute after StartRelay");
  RelayRoute r;
  r.proto = proto;
  r.ip = Address(host, link);
  r.port = port;
  r.target = r.ip + ":" + std::to_string(port);
  r.relay_port = kRelayFirstPort + int(relay_routes_.size());
  relay_routes_.push_back(r);
  return std::string(kRelayIp) + ":" + std::to_string(r.relay_port);
}

Status NetLab::StartRelay() {
  if (relay_binary_.empty()) return Status::InvalidArgument("no relay binary given to NetLab::Create");
  if (relay_pid_ > 0) return Status::InvalidArgument("relay already started");
  std::vector<std::string> argv = {relay_binary_, "--control", dir_ + "/relay.ctl", "--bind", kRelayIp};
  for (const RelayRoute& r : relay_routes_) {
    argv.push_back(r.proto == Proto::kUdp ? "--udp" : "--tcp");
    argv.push_back(std::to_string(r.relay_port) + "=" + r.target);
  }
  TANDEM_ASSIGN_OR_RETURN(relay_pid_, Spawn(Host::kRouter, argv, dir_ + "/relay.log"));
  // Ready once it answers on its control socket.
  std::string reply;
  Status st = Status::Timeout("relay did not answer");
  for (int i = 0; i < 200; ++i) {
    st = RelayCommand("stats", &reply);
    if (st.ok()) break;
    if (!Alive(relay_pid_)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!st.ok()) {
    std::ifstream log(dir_ + "/relay.log");
    std::stringstream s;
    s << log.rdbuf();
    return st.WithContext("starting the relay (log: " + s.str() + ")");
  }
  std::string script = "table ip tdmnat {\n  chain pre { type nat hook prerouting priority -100; policy accept;\n";
  for (const RelayRoute& r : relay_routes_) {
    const char* p = r.proto == Proto::kUdp ? "udp" : "tcp";
    script += "    ip daddr " + r.ip + " " + p + " dport " + std::to_string(r.port) + " dnat to " + kRelayIp + ":" +
              std::to_string(r.relay_port) + "\n";
  }
  script += "  }\n}\n";
  return Nft(Host::kRouter, script);
}

Status NetLab::RelayCommand(const std::string& line, std::string* reply) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::FromErrno("socket", errno);
  const std::string path = dir_ + "/relay.ctl";
  sockaddr_un addr;
  TANDEM_RETURN_IF_ERROR(MakeUnixSockaddr(path, &addr).WithContext("relay control socket"));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Status::FromErrno("connect " + path, errno);
  }
  timeval tv{2, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  TANDEM_RETURN_IF_ERROR(WriteFull(fd.get(), (line + "\n").data(), line.size() + 1));
  std::string out;
  char buf[1024];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, size_t(n));
    if (out.find('\n') != std::string::npos) break;
  }
  if (out.rfind("ok", 0) != 0) return Status::IoError("relay answered '" + out + "' to '" + line + "'");
  *reply = out.substr(0, out.find('\n'));
  return Status::Ok();
}

Status NetLab::SetRelay(int delay_ms, int jitter_ms, int drop_pct) {
  if (relay_pid_ <= 0) return Status::InvalidArgument("relay not started");
  std::string reply;
  return RelayCommand("set delay_ms=" + std::to_string(delay_ms) + " jitter_ms=" + std::to_string(jitter_ms) +
                          " drop_pct=" + std::to_string(drop_pct),
                      &reply);
}

Result<std::string> NetLab::RelayStats() {
  if (relay_pid_ <= 0) return Status::InvalidArgument("relay not started");
  std::string reply;
  TANDEM_RETURN_IF_ERROR(RelayCommand("stats", &reply));
  return reply.size() > 3 ? reply.substr(3) : reply;
}

}  // namespace tandem::faults
