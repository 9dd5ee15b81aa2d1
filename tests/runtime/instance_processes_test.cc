// Every host process of an instance is found by the mark in its environment
// and ended, the ones whose parent died first included; no other process is
// touched.
#include "runtime/instance_processes.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

#include <gtest/gtest.h>

#include "runtime/instance.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using namespace std::chrono_literals;

// Runs `script` under sh with `environment`, in the background, as the
// leader of a process group of its own; returns its pid. A script that is
// one command says `exec`, or the command would outlive a kill of the shell
// (and hold the test's output open, which ctest waits on).
pid_t start(const std::string& script, const std::string& environment) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    ::execle("/bin/sh", "sh", "-c", script.c_str(), nullptr,
             std::vector<char*>{const_cast<char*>(environment.c_str()), const_cast<char*>("PATH=/usr/bin:/bin"),
                                nullptr}
                 .data());
    _exit(127);
  }
  return pid;
}

bool alive(pid_t pid) {
  std::string stat = testing::read_text("/proc/" + std::to_string(pid) + "/stat");
  return !stat.empty() && stat.find(") Z") == std::string::npos;
}

TEST(InstanceProcesses, EndsEveryMarkedProcessEvenWhenItsParentDiedFirst) {
  std::string id = random_hex(8);
  // A parent with two children of its own, as UML's main process has helpers.
  pid_t parent = start("sleep 300 & sleep 300 & wait", instance_marker(id));
  pid_t stranger = start("exec sleep 300", instance_marker(random_hex(8)));
  ASSERT_TRUE(testing::wait_for([&] { return find_instance_processes(id).size() == 3; }, 30s,
                                [&] { return std::to_string(find_instance_processes(id).size()) + " found"; }));
  // Killing the parent alone leaves the children, reparented, still marked.
  ::kill(parent, SIGKILL);
  ::waitpid(parent, nullptr, 0);
  ASSERT_TRUE(testing::wait_for([&] { return find_instance_processes(id).size() == 2; }, 30s,
                                [&] { return std::to_string(find_instance_processes(id).size()) + " found"; }));
  auto ended = end_instance_processes(id, 20s);
  ASSERT_TRUE(ended) << ended.error().message;
  EXPECT_EQ(*ended, 2u);
  EXPECT_TRUE(find_instance_processes(id).empty());
  EXPECT_TRUE(alive(stranger)) << "another instance's process was killed";
  ::kill(-stranger, SIGKILL);
  ::waitpid(stranger, nullptr, 0);
}

TEST(InstanceProcesses, NothingMarkedIsNothingToEnd) {
  auto ended = end_instance_processes(random_hex(8), 1s);
  ASSERT_TRUE(ended) << ended.error().message;
  EXPECT_EQ(*ended, 0u);
}

TEST(InstanceProcesses, TheMarkIsAWholeEnvironmentEntry) {
  std::string id = random_hex(8);
  // The id with more after it is another instance's mark.
  pid_t longer = start("exec sleep 300", instance_marker(id) + "00");
  ASSERT_TRUE(testing::wait_for([&] { return alive(longer) && !find_instance_processes(id + "00").empty(); }, 30s,
                                [] { return std::string("not started"); }));
  EXPECT_TRUE(find_instance_processes(id).empty());
  ::kill(-longer, SIGKILL);
  ::waitpid(longer, nullptr, 0);
}

}  // namespace
}  // namespace kiln
