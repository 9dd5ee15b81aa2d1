#include "builder/account_files.h"

#include <charconv>

namespace kiln {
namespace {

constexpr uint32_t kFirstUserId = 1000;
constexpr uint32_t kLastUserId = 59999;

std::vector<std::string> split_fields(std::string_view line) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t colon = line.find(':', start);
    out.emplace_back(line.substr(start, colon - start));
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  return out;
}

std::optional<uint32_t> parse_id(std::string_view text) {
  uint32_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

}  // namespace

ColonFile ColonFile::parse(std::string_view text) {
  ColonFile file;
  while (!text.empty()) {
    size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    if (!line.empty()) file.rows_.push_back(split_fields(line));
    if (newline == std::string_view::npos) break;
    text.remove_prefix(newline + 1);
  }
  return file;
}

std::string ColonFile::to_string() const {
  std::string out;
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size(); ++i) {
      if (i) out += ':';
      out += row[i];
    }
    out += '\n';
  }
  return out;
}

std::vector<std::string>* ColonFile::find(std::string_view name) {
  for (auto& row : rows_)
    if (!row.empty() && row[0] == name) return &row;
  return nullptr;
}

const std::vector<std::string>* ColonFile::find(std::string_view name) const {
  return const_cast<ColonFile*>(this)->find(name);
}

bool ColonFile::has_id(uint32_t id, size_t field) const {
  for (const auto& row : rows_)
    if (row.size() > field && parse_id(row[field]) == id) return true;
  return false;
}

Result<std::pair<uint32_t, uint32_t>> AccountFiles::add_user(const NewUser& user) {
  if (passwd.find(user.name))
    return fail(ErrorKind::kBadInput, "user {} already exists in the image", user.name);
  for (const std::string& name : user.groups)
    if (!group.find(name))
      return fail(ErrorKind::kBadInput, "group {} does not exist in the image", name);
  uint32_t uid = 0;
  if (user.uid) {
    if (passwd.has_id(*user.uid, 2))
      return fail(ErrorKind::kBadInput, "uid {} is already used in the image", *user.uid);
    uid = *user.uid;
  } else {
    uid = kFirstUserId;
    while (uid <= kLastUserId && (passwd.has_id(uid, 2) || group.has_id(uid, 2))) ++uid;
  }
  // A private group with the user's name, with gid = uid when that is free.
  uint32_t gid = uid;
  if (group.find(user.name))
    return fail(ErrorKind::kBadInput, "group {} already exists in the image", user.name);
  while (group.has_id(gid, 2)) ++gid;
  passwd.add({user.name, "x", std::to_string(uid), std::to_string(gid), user.comment, user.home,
              user.shell});
  shadow.add({user.name, user.password_hash, std::to_string(days_since_epoch), "0", "99999", "7", "",
              "", ""});
  group.add({user.name, "x", std::to_string(gid), ""});
  gshadow.add({user.name, "!", "", ""});
  for (const std::string& name : user.groups) {
    for (ColonFile* file : {&group, &gshadow}) {
      auto* row = file->find(name);
      if (!row) continue;
      // The member list is the fourth field of both group and gshadow.
      if (row->size() < 4) row->resize(4);
      std::string& list = (*row)[3];
      list += list.empty() ? user.name : "," + user.name;
    }
  }
  return std::pair{uid, gid};
}

Result<> AccountFiles::set_password(std::string_view user, std::string_view hash) {
  auto* row = shadow.find(user);
  if (!row) return fail(ErrorKind::kBadInput, "user {} has no /etc/shadow entry in the image", user);
  if (row->size() < 9) row->resize(9);
  (*row)[1] = hash;
  (*row)[2] = std::to_string(days_since_epoch);
  return {};
}

Result<std::pair<uint32_t, uint32_t>> AccountFiles::resolve_owner(std::string_view owner) const {
  auto colon = owner.find(':');
  std::string_view user_part = owner.substr(0, colon);
  std::string_view group_part = colon == std::string_view::npos ? std::string_view() : owner.substr(colon + 1);
  uint32_t uid = 0, gid = 0;
  if (auto id = parse_id(user_part)) {
    uid = *id;
    gid = *id;
  } else if (const auto* row = passwd.find(user_part); row && row->size() > 3) {
    uid = parse_id((*row)[2]).value_or(0);
    gid = parse_id((*row)[3]).value_or(0);
  } else {
    return fail(ErrorKind::kBadInput, "owner \"{}\": no user {} in the image", owner, user_part);
  }
  if (!group_part.empty()) {
    if (auto id = parse_id(group_part)) {
      gid = *id;
    } else if (const auto* row = group.find(group_part); row && row->size() > 2) {
      gid = parse_id((*row)[2]).value_or(0);
    } else {
      return fail(ErrorKind::kBadInput, "owner \"{}\": no group {} in the image", owner, group_part);
    }
  }
  return std::pair{uid, gid};
}

}  // namespace kiln
