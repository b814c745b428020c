#include "tests/libvirt/private_libvirtd.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

namespace tandem::testing {
namespace {

bool Exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

std::string PrivateLibvirtd::Start() {
  if (::geteuid() != 0) return "a private libvirtd needs root (mount namespace, bind mounts)";
  for (const char* binary : {"/usr/sbin/libvirtd", "/usr/bin/unshare"}) {
    if (::access(binary, X_OK) != 0) return std::string(binary) + " is missing (scripts/setup installs it)";
  }
  const std::string d = dir_.path();
  for (const char* sub : {"run", "lib", "cache", "log", "etc"}) ::mkdir((d + "/" + sub).c_str(), 0700);
  std::ofstream(d + "/etc/libvirtd.conf") << "unix_sock_group = \"root\"\nunix_sock_rw_perms = \"0700\"\n"
                                             "auth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n"
                                             "log_outputs = \"3:stderr\"\n";
  // stdio_handler "file": no virtlogd to start beside it.
  std::ofstream(d + "/etc/qemu.conf") << "user = \"root\"\ngroup = \"root\"\ndynamic_ownership = 0\n"
                                         "remember_owner = 0\nsecurity_driver = \"none\"\nnamespaces = []\n"
                                         "cgroup_controllers = []\nstdio_handler = \"file\"\n";
  std::string script = "set -e; mount --make-rprivate /; ";
  for (const char* pair : {"run:/run/libvirt", "lib:/var/lib/libvirt", "cache:/var/cache/libvirt",
                           "log:/var/log/libvirt", "etc:/etc/libvirt"}) {
    const std::string p = pair, src = d + "/" + p.substr(0, p.find(':')), dst = p.substr(p.find(':') + 1);
    script += "mkdir -p " + dst + "; mount --bind " + src + " " + dst + "; ";
  }
  // Its own pid file: /run/libvirtd.pid belongs to the host's daemon (or another test's).
  script += "exec /usr/sbin/libvirtd -f /etc/libvirt/libvirtd.conf -p " + d + "/libvirtd.pid >" + d + "/libvirtd.log 2>&1";
  pid_ = ::fork();
  if (pid_ < 0) return "fork failed";
  if (pid_ == 0) {
    ::execl("/usr/bin/unshare", "unshare", "-m", "--", "/bin/sh", "-c", script.c_str(), nullptr);
    ::_exit(127);
  }
  const std::string socket = d + "/run/libvirt-sock";
  for (int i = 0; i < 200; ++i) {  // 20 s
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      std::ifstream log(d + "/libvirtd.log");
      std::stringstream text;
      text << log.rdbuf();
      return "libvirtd exited at start (" + std::to_string(WEXITSTATUS(status)) + "): " + text.str().substr(0, 400);
    }
    if (Exists(socket)) return "";
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return "libvirtd did not open " + socket + " within 20 s";
}

PrivateLibvirtd::~PrivateLibvirtd() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  for (int i = 0; i < 100; ++i) {  // 10 s, then SIGKILL
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
}

std::string PrivateLibvirtd::DomainLog(const std::string& domain) const {
  std::ifstream log(dir_.path() + "/log/qemu/" + domain + ".log");
  std::stringstream text;
  text << log.rdbuf();
  return text.str();
}

}  // namespace tandem::testing
