#include "tests/test_support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include "base/subprocess.h"

namespace kiln::testing {

#ifdef KILN_EXEC_AGENT
// A test binary lives in build/tests, not beside kiln, so the search that
// finds the exec agent for a bake (builder/guest_agent.cc) is pointed at the
// one this build made, unless the person running the tests chose another.
namespace {
const bool exec_agent_located = [] { return ::setenv("KILN_EXEC_AGENT", KILN_EXEC_AGENT, 0) == 0; }();
}
#endif

ScratchDir::ScratchDir() {
  const char* base = std::getenv("KILN_TEST_TMPDIR");
  fs::path parent = base ? base : fs::temp_directory_path();
  std::string pattern = (parent / "kiln-test-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

ScratchDir::~ScratchDir() {
  std::error_code ignored;
  fs::remove_all(path_, ignored);
}

HostWideLock::HostWideLock(const std::string& what) {
  fd_ = ::open(("/tmp/kiln-test-" + what + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0 || ::flock(fd_, LOCK_EX) != 0) throw std::runtime_error("cannot lock /tmp/kiln-test-" + what + ".lock");
}

HostWideLock::~HostWideLock() { ::close(fd_); }

fs::path source_path(const std::string& relative) { return fs::path(KILN_SOURCE_DIR) / relative; }

std::string kiln_binary() { return KILN_BINARY; }

ProcessResult run_program(const std::vector<std::string>& argv,
                          const std::vector<std::string>& env) {
  Command command;
  command.argv = argv;
  command.env = env;
  // Any exit code is an answer here; the test decides what it means.
  for (int code = 1; code < 256; ++code) command.ok_exit_codes.push_back(code);
  auto done = run(command);
  if (!done) return {-1, "", done.error().to_string()};
  return {done->exit_code, done->out, done->err};
}

nlohmann::json last_json_line(const std::string& out) {
  std::string_view text = out;
  while (text.ends_with('\n')) text.remove_suffix(1);
  size_t start = text.rfind('\n');
  return nlohmann::json::parse(start == std::string_view::npos ? text : text.substr(start + 1), nullptr, false);
}

ProcessResult run_kiln(const std::vector<std::string>& args,
                       const std::vector<std::string>& env) {
  std::vector<std::string> argv = {kiln_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_program(argv, env);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::vector<std::string> list_tree(const fs::path& dir) {
  std::vector<std::string> names;
  if (!fs::exists(dir)) return names;
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    names.push_back(entry.path().lexically_relative(dir).string());  // symlinks named, not followed
  std::sort(names.begin(), names.end());
  return names;
}

::testing::AssertionResult wait_for(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
                                    const std::function<std::string()>& seen) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline)
      return ::testing::AssertionFailure() << "not so after " << timeout.count() / 1000.0 << " s; last seen:\n"
                                           << seen();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return ::testing::AssertionSuccess();
}

namespace {

bool mentions(const std::string& text, const std::vector<std::string>& needles) {
  return std::any_of(needles.begin(), needles.end(),
                     [&](const std::string& needle) { return text.find(needle) != std::string::npos; });
}

// Whether one of the process's open files lies under one of `needles`.
bool holds_file(const fs::path& process, const std::vector<std::string>& needles) {
  std::error_code ec;
  for (const auto& fd : fs::directory_iterator(process / "fd", ec)) {
    std::string target = fs::read_symlink(fd.path(), ec).string();
    if (!ec && mentions(target, needles)) return true;
  }
  return false;
}

}  // namespace

std::vector<std::string> processes_naming(const std::vector<std::string>& needles) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    std::string pid = entry.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string stat = read_text(entry.path() / "stat");
    auto state_at = stat.rfind(") ");
    if (stat.empty() || state_at == std::string::npos || stat[state_at + 2] == 'Z') continue;
    std::string command = read_text(entry.path() / "cmdline");
    std::replace(command.begin(), command.end(), '\0', ' ');
    if (mentions(command, needles) || holds_file(entry.path(), needles)) out.push_back(pid + ": " + command);
  }
  return out;
}

std::string tail(const std::string& text, size_t max) {
  return text.size() > max ? "..." + text.substr(text.size() - max) : text;
}

std::string guest_listener(int port, const std::string& greeting) {
  return fmt::format("nohup perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalPort=>{},Listen=>5,"
                     "ReuseAddr=>1) or die; while($c=$s->accept){{print $c qq({}\\n); close $c}}' "
                     ">/dev/null 2>&1 & "
                     "for i in $(seq 300); do ss -ltn | grep -q ':{} ' && exit 0; sleep 0.1; done; exit 1",
                     port, greeting, port);
}

std::string first_line_from(const std::string& host, int port) {
  return fmt::format("timeout 10 bash -c 'exec 3<>/dev/tcp/{}/{} && head -1 <&3'", host, port);
}

uint16_t free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t size = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
  ::close(fd);
  return ntohs(address.sin_port);
}

}  // namespace kiln::testing
