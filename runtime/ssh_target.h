// SshTarget: another kiln host, reached as `ssh://[USER@]HOST[:PORT][/]`
// by the system's OpenSSH client, for `kiln migrate`. The URI takes
// libvirt's query parameters for its ssh transport, `keyfile` and
// `known_hosts`, so that one way of naming a key and the host keys to trust
// serves both kinds of URI. Host keys are checked strictly and nothing
// asks for a password (BatchMode): a host that is not known fails at once,
// as it should for something that moves a running machine there.
//
// One connection (an OpenSSH control master) carries every command and
// forwarded socket of one migration, so the host key is checked once and
// each further command costs a round trip, not a handshake.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/files.h"
#include "base/subprocess.h"

namespace kiln {

struct SshUri {
  std::string user;  // "" : ssh's default
  std::string host;
  int port = 0;  // 0 : ssh's default
  std::string keyfile;
  std::string known_hosts;
  std::string text;  // as given, for messages
};

// Parses an ssh:// URI; errors name the URI and what is wrong with it.
Result<SshUri> parse_ssh_uri(const std::string& text);

class SshTarget {
 public:
  // Connects (the control master); fails with ssh's own reason.
  static Result<SshTarget> connect(const SshUri& uri);
  SshTarget(SshTarget&& other) noexcept;
  ~SshTarget();

  const SshUri& uri() const { return uri_; }
  // The argv that runs `command` on the target through the connection.
  std::vector<std::string> command(const std::vector<std::string>& remote) const;
  // Runs `remote` on the target to completion, `input` on its stdin.
  Result<Completed> run(const std::vector<std::string>& remote, std::optional<std::string> input = {}) const;
  // Makes `local` a socket whose connections reach the target's `remote`
  // unix socket.
  Result<> forward_unix_socket(const std::filesystem::path& local, const std::string& remote) const;
  // A path for such a local socket, in a directory of the connection's
  // own, short enough for a socket's name.
  std::filesystem::path local_socket(const std::string& name) const { return control_dir_.path() / name; }

 private:
  SshTarget(SshUri uri, TempDir control_dir) : uri_(std::move(uri)), control_dir_(std::move(control_dir)) {}
  std::vector<std::string> base_argv() const;
  std::string control_path() const;

  SshUri uri_;
  TempDir control_dir_;
  bool open_ = false;
};

}  // namespace kiln
