// LoopbackSshd: an OpenSSH server of the test's own on 127.0.0.1, standing
// in for a second host. It has a host key and a client key made for the
// test (root logs in by that key only), and gives every session the
// environment the test names: another KILN_STATE_DIR and KILN_RUNTIME_DIR
// make "another kiln host" on the same machine. The server runs in the
// foreground as the test's child and ends with the fixture.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "tests/test_support.h"

namespace kiln::testing {

class LoopbackSshd {
 public:
  // `launcher` runs sshd (nsenter, for a server in another namespace).
  explicit LoopbackSshd(const std::vector<std::string>& session_env = {}, std::vector<std::string> launcher = {})
      : port_(free_loopback_port()) {
    if (!start(session_env, std::move(launcher))) return;
    up_ = wait_for([this] { return run_program(ssh({"true"})).exit_code == 0; }, std::chrono::seconds(20),
                   [this] { return run_program(ssh({"true"})).err + read_text(dir_ / "sshd.log"); });
  }
  ~LoopbackSshd() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  LoopbackSshd(const LoopbackSshd&) = delete;
  LoopbackSshd& operator=(const LoopbackSshd&) = delete;

  ::testing::AssertionResult up() const { return up_; }
  int port() const { return port_; }
  fs::path client_key() const { return dir_ / "client_key"; }
  fs::path known_hosts() const { return dir_ / "known_hosts"; }
  // The host part of a libvirt ssh URI: "root@127.0.0.1:PORT/PATH?
  // keyfile=...&known_hosts=...&command=...". libvirt 9.0's libssh
  // transports take the known hosts from known_hosts=; its ssh transport
  // (OpenSSH's client) ignores that, and checks the host key against
  // ~/.ssh/known_hosts, where the test's is not: command= makes it run a
  // wrapper of ssh that reads the test's file instead (no_verify=1 would
  // add the key to root's file, and accept it once changed).
  std::string uri_tail(const std::string& path = "/") const {
    return fmt::format("root@127.0.0.1:{}{}?keyfile={}&known_hosts={}&command={}", port_, path,
                       client_key().string(), known_hosts().string(), (dir_ / "ssh").string());
  }
  // The host as `kiln migrate --to` names it; kiln's ssh URIs honour
  // known_hosts themselves.
  std::string kiln_uri() const {
    return fmt::format("ssh://root@127.0.0.1:{}/?keyfile={}&known_hosts={}", port_, client_key().string(),
                       known_hosts().string());
  }
  std::vector<std::string> ssh(const std::vector<std::string>& command) const {
    std::vector<std::string> argv = {"ssh", "-p", std::to_string(port_), "-i", client_key().string(),
                                     "-o", "BatchMode=yes", "-o", "UserKnownHostsFile=" + known_hosts().string(),
                                     "-o", "StrictHostKeyChecking=yes", "root@127.0.0.1"};
    argv.insert(argv.end(), command.begin(), command.end());
    return argv;
  }

 private:
  bool start(const std::vector<std::string>& session_env, std::vector<std::string> argv) {
    if (::geteuid() != 0) return fail("sshd on loopback needs root here");
    if (::access("/usr/sbin/sshd", X_OK) != 0) return fail("/usr/sbin/sshd is missing (openssh-server)");
    for (const char* key : {"host_key", "client_key"}) {
      ProcessResult made = run_program({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kiln-test",
                                        "-f", (dir_ / key).string()});
      if (made.exit_code != 0) return fail(made.err);
    }
    write_text(dir_ / "authorized_keys", read_text(dir_ / "client_key.pub"));
    write_text(dir_ / "known_hosts", fmt::format("[127.0.0.1]:{} {}", port_, read_text(dir_ / "host_key.pub")));
    std::string config = fmt::format(
        "Port {}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile none\nAuthorizedKeysFile {}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nLogLevel ERROR\nMaxSessions 50\nMaxStartups 50\n",
        port_, (dir_ / "host_key").string(), (dir_ / "authorized_keys").string());
    if (!session_env.empty()) {
      config += "SetEnv";
      for (const std::string& variable : session_env) config += " " + variable;
      config += "\n";
    }
    write_text(dir_ / "sshd_config", config);
    write_text(dir_ / "ssh", fmt::format("#!/bin/sh\nexec ssh -o BatchMode=yes -o UserKnownHostsFile={} "
                                         "-o StrictHostKeyChecking=yes \"$@\"\n", known_hosts().string()));
    fs::permissions(dir_ / "ssh", fs::perms(0755));
    // sshd wants its privilege separation directory.
    fs::create_directories("/run/sshd");
    // argv[0] of sshd too is the absolute path: sshd re-executes itself by
    // it. Made before the fork: the child only execs.
    argv.insert(argv.end(), {"/usr/sbin/sshd", "-D", "-f", (dir_ / "sshd_config").string(), "-E",
                             (dir_ / "sshd.log").string()});
    std::vector<char*> pointers;
    for (std::string& arg : argv) pointers.push_back(arg.data());
    pointers.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setpgid(0, 0);
      execvp(pointers[0], pointers.data());
      ::_exit(127);
    }
    return pid_ > 0 || fail("fork failed");
  }
  bool fail(const std::string& why) {
    up_ = ::testing::AssertionFailure() << why;
    return false;
  }

  ScratchDir dir_;
  int port_;
  pid_t pid_ = -1;
  ::testing::AssertionResult up_ = ::testing::AssertionSuccess();
};

}  // namespace kiln::testing
