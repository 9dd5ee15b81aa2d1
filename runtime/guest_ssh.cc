#include "runtime/guest_ssh.h"

#include <fmt/format.h>

namespace kiln {

Result<SshInvocation> plan_ssh(const InstanceRecord& record, const std::filesystem::path& known_hosts_path,
                               const std::string& user, const std::vector<std::string>& extra) {
  const std::string& name = record.spec.name;
  if (record.state != InstanceState::kRunning)
    return fail(ErrorKind::kFailed, "{} is {}, not running", name, state_name(record.state));
  const NetworkSpec& network = record.spec.network;
  if (network.ssh_port == 0)
    return fail(ErrorKind::kBadInput,
                "{} has no ssh kiln can reach: boot it with --net user --ssh-port PORT (it has {}); "
                "`kiln exec {} -- COMMAND` needs no network",
                name, network.nics.empty() ? "no network" : "no port forwarded", name);
  std::vector<SshHostKey> keys = record.confirmed_ssh_host_keys();
  if (keys.empty())
    return fail(ErrorKind::kFailed,
                "{}: its sshd does not serve the host keys kiln made ({}), so kiln cannot vouch for it; "
                "use ssh yourself and check the key by hand",
                name, record.guest_ssh_host_keys.empty() ? "the guest has not reported" : record.guest_ssh_host_keys);
  std::string host = fmt::format("[127.0.0.1]:{}", network.ssh_port);
  SshInvocation ssh;
  for (const SshHostKey& key : keys) {
    std::string line = key.public_key;
    while (!line.empty() && line.back() == '\n') line.pop_back();
    ssh.known_hosts += host + " " + line + "\n";
  }
  ssh.argv = {"ssh",
              "-p", std::to_string(network.ssh_port),
              "-o", "UserKnownHostsFile=" + known_hosts_path.string(),
              "-o", "GlobalKnownHostsFile=/dev/null",
              "-o", "StrictHostKeyChecking=yes",
              "-o", "CheckHostIP=no",
              "-l", user,
              "127.0.0.1"};
  ssh.argv.insert(ssh.argv.end(), extra.begin(), extra.end());
  return ssh;
}

}  // namespace kiln
