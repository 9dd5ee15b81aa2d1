#include "base/stale_temps.h"

#include <unistd.h>

#include <charconv>
#include <fstream>
#include <optional>
#include <sstream>

namespace kiln {
namespace {

namespace fs = std::filesystem;

// A process's start time in clock ticks since boot, if it exists.
std::optional<std::string> start_time_of(std::string_view pid) {
  std::ifstream in("/proc/" + std::string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name (field 2) may hold spaces and parentheses: count after its ')'.
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(close + 1));
  std::string field;
  for (int n = 3; n <= 22 && fields >> field; ++n)
    if (n == 22) return field;
  return std::nullopt;
}

bool all_digits(std::string_view text) {
  return !text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos;
}

// Whether a directory name is PREFIX's tagged kind and its owner is gone.
bool is_stale(std::string_view name, std::string_view prefix) {
  std::string lead = fmt::format(".{}-", prefix);
  if (!name.starts_with(lead)) return false;
  std::string_view tag = name.substr(lead.size());
  size_t dash = tag.rfind('-');
  size_t dot = tag.find('.');
  if (dash == std::string_view::npos || dot == std::string_view::npos || dot > dash) return false;
  std::string_view pid = tag.substr(0, dot);
  std::string_view start = tag.substr(dot + 1, dash - dot - 1);
  if (!all_digits(pid) || !all_digits(start) || tag.size() - dash - 1 != 6) return false;
  std::optional<std::string> running = start_time_of(pid);
  return !running || *running != start;
}

}  // namespace

std::string process_tag() {
  std::string pid = std::to_string(::getpid());
  return pid + "." + start_time_of(pid).value_or("0");
}

Result<TempDir> create_tagged_temp_dir(const fs::path& parent, std::string_view prefix) {
  return TempDir::create(parent, fmt::format("{}-{}", prefix, process_tag()));
}

size_t remove_stale_temp_dirs(const fs::path& parent, std::string_view prefix) {
  size_t removed = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(parent, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::error_code ignored;
    if (!it->is_directory(ignored) || it->is_symlink(ignored)) continue;
    if (!is_stale(it->path().filename().string(), prefix)) continue;
    if (fs::remove_all(it->path(), ignored) != static_cast<std::uintmax_t>(-1) && !ignored) ++removed;
  }
  return removed;
}

}  // namespace kiln
