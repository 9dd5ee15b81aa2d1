#include "runtime/ssh_target.h"

#include <fmt/format.h>

#include <charconv>

namespace kiln {
namespace {

namespace fs = std::filesystem;

// %XX escapes, as URIs write a path's '/' in a query value.
Result<std::string> percent_decoded(const std::string& text, const std::string& uri) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    unsigned value = 0;
    if (i + 2 >= text.size() ||
        std::from_chars(text.data() + i + 1, text.data() + i + 3, value, 16).ptr != text.data() + i + 3)
      return fail(ErrorKind::kBadInput, "{}: a '%' that is not followed by two hex digits", uri);
    out += static_cast<char>(value);
    i += 2;
  }
  return out;
}

Result<> read_query(const std::string& query, SshUri& uri) {
  size_t start = 0;
  while (start < query.size()) {
    size_t end = query.find('&', start);
    if (end == std::string::npos) end = query.size();
    std::string pair = query.substr(start, end - start);
    start = end + 1;
    size_t equals = pair.find('=');
    std::string key = pair.substr(0, equals);
    KILN_ASSIGN(std::string value, percent_decoded(equals == std::string::npos ? "" : pair.substr(equals + 1), uri.text));
    if (key == "keyfile") uri.keyfile = value;
    else if (key == "known_hosts") uri.known_hosts = value;
    else
      return fail(ErrorKind::kBadInput, "{}: unknown parameter \"{}\" (kiln's ssh URIs take keyfile and known_hosts)",
                  uri.text, key);
  }
  return {};
}

}  // namespace

Result<SshUri> parse_ssh_uri(const std::string& text) {
  SshUri uri;
  uri.text = text;
  constexpr std::string_view kScheme = "ssh://";
  if (!text.starts_with(kScheme))
    return fail(ErrorKind::kBadInput, "{}: not an ssh URI (ssh://[USER@]HOST[:PORT]; a libvirt host is "
                "qemu+ssh://...)", text);
  std::string rest = text.substr(kScheme.size());
  size_t query = rest.find('?');
  if (query != std::string::npos) {
    KILN_TRY(read_query(rest.substr(query + 1), uri));
    rest.resize(query);
  }
  size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    if (rest.substr(slash) != "/")
      return fail(ErrorKind::kBadInput, "{}: a kiln host has no path (\"{}\")", text, rest.substr(slash));
    rest.resize(slash);
  }
  if (size_t at = rest.rfind('@'); at != std::string::npos) {
    uri.user = rest.substr(0, at);
    rest = rest.substr(at + 1);
  }
  if (size_t colon = rest.rfind(':'); colon != std::string::npos && rest.find(']') == std::string::npos) {
    std::string port = rest.substr(colon + 1);
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), uri.port);
    if (ec != std::errc() || end != port.data() + port.size() || uri.port < 1 || uri.port > 65535)
      return fail(ErrorKind::kBadInput, "{}: \"{}\" is not a port", text, port);
    rest.resize(colon);
  }
  uri.host = rest;
  if (uri.host.empty() || uri.host.starts_with('-'))
    return fail(ErrorKind::kBadInput, "{}: no host name", text);
  return uri;
}

std::vector<std::string> SshTarget::base_argv() const {
  std::vector<std::string> argv = {"ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                                   "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=5",
                                   "-o", "ControlPath=" + control_path()};
  if (uri_.port) argv.insert(argv.end(), {"-p", std::to_string(uri_.port)});
  if (!uri_.keyfile.empty()) argv.insert(argv.end(), {"-i", uri_.keyfile, "-o", "IdentitiesOnly=yes"});
  if (!uri_.known_hosts.empty()) argv.insert(argv.end(), {"-o", "UserKnownHostsFile=" + uri_.known_hosts});
  if (!uri_.user.empty()) argv.insert(argv.end(), {"-l", uri_.user});
  return argv;
}

std::string SshTarget::control_path() const { return (control_dir_.path() / "control").string(); }

Result<SshTarget> SshTarget::connect(const SshUri& uri) {
  KILN_ASSIGN(TempDir dir, TempDir::create("/tmp", "kiln-ssh"));
  SshTarget target(uri, std::move(dir));
  Command master;
  master.argv = target.base_argv();
  // -f: into the background once authenticated, so that a failure to
  // connect is this command's failure.
  master.argv.insert(master.argv.end(), {"-M", "-N", "-f", "-o", "ControlPersist=no", "--", uri.host});
  master.timeout = std::chrono::seconds(60);
  if (auto connected = kiln::run(master); !connected)
    return std::unexpected(std::move(connected.error()).with_context("cannot reach " + uri.text));
  target.open_ = true;
  return target;
}

SshTarget::SshTarget(SshTarget&& other) noexcept
    : uri_(std::move(other.uri_)), control_dir_(std::move(other.control_dir_)), open_(other.open_) {
  other.open_ = false;
}

SshTarget::~SshTarget() {
  if (!open_) return;
  std::vector<std::string> argv = base_argv();
  argv.insert(argv.end(), {"-O", "exit", "--", uri_.host});
  Command exit;
  exit.argv = argv;
  exit.timeout = std::chrono::seconds(10);
  (void)kiln::run(exit);
}

std::vector<std::string> SshTarget::command(const std::vector<std::string>& remote) const {
  std::vector<std::string> argv = base_argv();
  argv.insert(argv.end(), {"--", uri_.host});
  std::string line;
  for (const std::string& word : remote) line += (line.empty() ? "" : " ") + shell_quoted(word);
  argv.push_back(line);
  return argv;
}

Result<Completed> SshTarget::run(const std::vector<std::string>& remote, std::optional<std::string> input) const {
  Command command;
  command.argv = this->command(remote);
  command.stdin_text = std::move(input);
  command.timeout = std::chrono::minutes(5);
  auto done = kiln::run(command);
  if (!done) return std::unexpected(std::move(done.error()).with_context(uri_.text));
  return done;
}

Result<> SshTarget::forward_unix_socket(const fs::path& local, const std::string& remote) const {
  std::vector<std::string> argv = base_argv();
  argv.insert(argv.end(), {"-O", "forward", "-L", local.string() + ":" + remote, "--", uri_.host});
  Command forward;
  forward.argv = argv;
  forward.timeout = std::chrono::seconds(30);
  auto done = kiln::run(forward);
  if (!done) return std::unexpected(std::move(done.error()).with_context(uri_.text + ": forwarding " + remote));
  return {};
}

}  // namespace kiln
