// Accounts: who a command runs as, read straight from the guest's
// /etc/passwd and /etc/group. getpwnam and friends go through NSS, which a
// statically linked program cannot load reliably (and the guest's glibc may
// be older than the one the agent was linked with), so the agent parses the
// files itself.
#pragma once

#include <sys/types.h>

#include <expected>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::agent {

struct Account {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
  std::string shell;
  std::vector<gid_t> groups;  // the primary group first, then those that list the user
};

// The account `user` names (a login name, or a uid in decimal) in the files
// given, or why not.
std::expected<Account, std::string> find_account(std::string_view user, std::string_view passwd,
                                                 std::string_view group);

// The same, from /etc/passwd and /etc/group.
std::expected<Account, std::string> find_account(std::string_view user);

}  // namespace kiln::agent
