// SSH host keys made on the host for an instance (as cloud-init's
// ssh_keys does), so that the guest need not make them on its first boot,
// where key generation sits between boot and a running sshd, and so that
// kiln can show the key's fingerprint before anyone connects. Keys are in
// OpenSSH's own formats: "openssh-key-v1" for the private key (unencrypted,
// like ssh-keygen -N ""), an authorized_keys-style line for the public one.
#pragma once

#include <string>
#include <string_view>

#include "base/error.h"

namespace kiln {

enum class SshKeyType { kEd25519, kEcdsaP256 };

struct SshHostKey {
  std::string file_name;    // "ssh_host_ed25519_key": where sshd looks in /etc/ssh
  std::string private_key;  // -----BEGIN OPENSSH PRIVATE KEY----- ...
  std::string public_key;   // "ssh-ed25519 AAAA... COMMENT\n"
  std::string fingerprint;  // "SHA256:..." as ssh-keygen -l prints it
};

Result<SshHostKey> generate_ssh_host_key(SshKeyType type, std::string_view comment);

}  // namespace kiln
