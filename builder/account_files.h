// AccountFiles: the image's /etc/passwd, /etc/group, /etc/shadow and
// /etc/gshadow as tables of colon-separated fields, edited offline the way
// useradd would: a new user gets the first free id from 1000 and a private
// group of the same name. Lines kiln does not touch are written back as they
// were.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"

namespace kiln {

class ColonFile {
 public:
  static ColonFile parse(std::string_view text);
  std::string to_string() const;

  // The row whose first field is `name`.
  std::vector<std::string>* find(std::string_view name);
  const std::vector<std::string>* find(std::string_view name) const;
  bool has_id(uint32_t id, size_t field) const;
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }

 private:
  std::vector<std::vector<std::string>> rows_;
};

struct NewUser {
  std::string name;
  std::optional<uint32_t> uid;
  std::string comment;
  std::string home;
  std::string shell;
  std::string password_hash;  // "*" for no password
  std::vector<std::string> groups;
};

struct AccountFiles {
  ColonFile passwd;
  ColonFile group;
  ColonFile shadow;
  ColonFile gshadow;
  int64_t days_since_epoch = 0;  // "last password change" for new entries

  // Adds the user and its private group; returns the uid and gid chosen.
  // Errors: the name or uid is taken, or a supplementary group is missing.
  Result<std::pair<uint32_t, uint32_t>> add_user(const NewUser& user);
  Result<> set_password(std::string_view user, std::string_view hash);
  // Numeric ids of "user", "user:group", "uid:gid" (for chown in recipes).
  Result<std::pair<uint32_t, uint32_t>> resolve_owner(std::string_view owner) const;
};

}  // namespace kiln
