// GuestSsh: how `kiln ssh` reaches an instance's sshd. kiln made the
// instance's host keys, so it writes them to a known_hosts file of the
// instance's own and has ssh insist on them: the first connection is not
// taken on trust, and the user's ~/.ssh/known_hosts is left alone.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "runtime/instance.h"

namespace kiln {

struct SshInvocation {
  std::vector<std::string> argv;  // ssh and its arguments
  std::string known_hosts;        // the file's text, for argv's UserKnownHostsFile
};

// The ssh command for `record`, as `user`, with `extra` (ssh options, then
// a command) appended; an error that says why when the instance has no
// ssh kiln can reach or vouch for.
Result<SshInvocation> plan_ssh(const InstanceRecord& record, const std::filesystem::path& known_hosts_path,
                               const std::string& user, const std::vector<std::string>& extra);

}  // namespace kiln
