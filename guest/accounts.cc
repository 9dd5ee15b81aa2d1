// Reading /etc/passwd and /etc/group for the exec agent (see accounts.h).
#include "guest/accounts.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <iterator>
#include <optional>

namespace kiln::agent {
namespace {

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> fields;
  while (true) {
    size_t at = text.find(separator);
    fields.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return fields;
    text.remove_prefix(at + 1);
  }
}

std::optional<unsigned> number(std::string_view text) {
  unsigned value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// The passwd entry whose name, or else whose uid, is `user`: a name is
// matched first because a login name may be all digits.
std::optional<Account> passwd_entry(std::string_view user, std::string_view passwd) {
  std::optional<Account> by_uid;
  std::optional<unsigned> wanted_uid = number(user);
  for (std::string_view line : split(passwd, '\n')) {
    std::vector<std::string_view> fields = split(line, ':');
    if (fields.size() < 7) continue;
    std::optional<unsigned> uid = number(fields[2]), gid = number(fields[3]);
    if (!uid || !gid) continue;
    Account account{std::string(fields[0]), *uid, *gid, std::string(fields[5]), std::string(fields[6]), {*gid}};
    if (fields[0] == user) return account;
    if (wanted_uid == uid && !by_uid) by_uid = account;
  }
  return by_uid;
}

void add_member_groups(Account& account, std::string_view group) {
  for (std::string_view line : split(group, '\n')) {
    std::vector<std::string_view> fields = split(line, ':');
    if (fields.size() < 4) continue;
    std::optional<unsigned> gid = number(fields[2]);
    if (!gid || std::find(account.groups.begin(), account.groups.end(), *gid) != account.groups.end()) continue;
    for (std::string_view member : split(fields[3], ','))
      if (member == account.name) account.groups.push_back(*gid);
  }
}

std::string read_file(const char* path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

std::expected<Account, std::string> find_account(std::string_view user, std::string_view passwd,
                                                 std::string_view group) {
  std::optional<Account> account = passwd_entry(user, passwd);
  if (!account) return std::unexpected("no user \"" + std::string(user) + "\" in the guest's /etc/passwd");
  add_member_groups(*account, group);
  return *account;
}

std::expected<Account, std::string> find_account(std::string_view user) {
  return find_account(user, read_file("/etc/passwd"), read_file("/etc/group"));
}

}  // namespace kiln::agent
