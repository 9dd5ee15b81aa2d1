#include "feeds/pull_state.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdlib>

#include <nlohmann/json.hpp>

#include "base/files.h"
#include "feeds/version_order.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string home_dir() {
  if (const char* home = std::getenv("HOME"); home && *home) return home;
  struct passwd* entry = ::getpwuid(::getuid());
  return entry && entry->pw_dir ? entry->pw_dir : "/";
}

std::unexpected<Error> damaged(const fs::path& state, std::string_view why) {
  return fail(ErrorKind::kBadInput,
              "{}: not a state file kiln can read ({}); kiln keeps there what it has pulled from each feed, to "
              "refuse older feeds later. Remove it to start afresh",
              state.string(), why);
}

// The whole file: {"version": 1, "feeds": [{"uri", "signer", "date", "items": {NAME: VERSION}}]}.
Result<json> read_state(const fs::path& state) {
  std::error_code ec;
  if (!fs::exists(state, ec)) return json{{"version", 1}, {"feeds", json::array()}};
  KILN_ASSIGN(std::string text, read_file(state));
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || doc.value("version", 0) != 1 || !doc.contains("feeds") ||
      !doc["feeds"].is_array())
    return damaged(state, "not version 1 of its JSON");
  for (const json& feed : doc["feeds"])
    if (!feed.is_object() || !feed.value("uri", json()).is_string() || !feed.value("signer", json()).is_string() ||
        !feed.value("date", json()).is_number_integer() || !feed.value("items", json()).is_object())
      return damaged(state, "an entry lacks uri, signer, date or items");
  return doc;
}

json* find_entry(json& doc, const std::string& uri, const std::string& fingerprint) {
  for (json& feed : doc["feeds"])
    if (feed["uri"] == uri && feed["signer"] == fingerprint) return &feed;
  return nullptr;
}

// Holds an exclusive lock on STATE.lock while the state is read and rewritten.
Result<UniqueFd> lock_state(const fs::path& state) {
  std::error_code ec;
  fs::create_directories(state.parent_path(), ec);
  if (ec) return fail_errno("cannot create", state.parent_path().string(), ec.value());
  fs::path lock = state;
  lock += ".lock";
  KILN_ASSIGN(UniqueFd fd, open_file(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  while (::flock(fd.get(), LOCK_EX) != 0)
    if (errno != EINTR) return fail_errno("cannot lock", lock.string(), errno);
  return fd;
}

}  // namespace

fs::path default_pull_state_path() {
  const char* xdg = std::getenv("XDG_STATE_HOME");
  // The XDG spec: an empty or relative value is to be ignored.
  fs::path base = xdg && *xdg == '/' ? fs::path(xdg) : fs::path(home_dir()) / ".local" / "state";
  return base / "kiln" / "pulled-feeds.json";
}

Result<AcceptedFeed> load_accepted(const fs::path& state, const std::string& uri, const std::string& fingerprint) {
  KILN_ASSIGN(json doc, read_state(state));
  AcceptedFeed out;
  if (const json* entry = find_entry(doc, uri, fingerprint)) {
    out.date = (*entry)["date"].get<int64_t>();
    for (const auto& [name, version] : (*entry)["items"].items())
      if (version.is_string()) out.items[name] = version.get<std::string>();
  }
  return out;
}

Result<> record_accepted(const fs::path& state, const std::string& uri, const std::string& fingerprint, int64_t date,
                         const std::string& name, const std::string& version) {
  KILN_ASSIGN(UniqueFd lock, lock_state(state));
  KILN_ASSIGN(json doc, read_state(state));
  json* entry = find_entry(doc, uri, fingerprint);
  if (!entry) {
    doc["feeds"].push_back({{"uri", uri}, {"signer", fingerprint}, {"date", 0}, {"items", json::object()}});
    entry = &doc["feeds"].back();
  }
  (*entry)["date"] = std::max((*entry)["date"].get<int64_t>(), date);
  json& items = (*entry)["items"];
  if (!items.contains(name) || !items[name].is_string() ||
      compare_versions(items[name].get<std::string>(), version) < 0)
    items[name] = version;
  // A name that is not UTF-8 is stored with U+FFFD rather than failing the pull.
  return write_file_atomic(state, doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n", 0600);
}

}  // namespace kiln
