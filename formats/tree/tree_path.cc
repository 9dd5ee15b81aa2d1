#include "formats/tree/tree_path.h"

#include <deque>
#include <vector>

namespace kiln {
namespace {

// How many symlinks one lookup may pass through (Linux's limit).
constexpr int kMaxSymlinkHops = 40;

std::deque<std::string> components(std::string_view path) {
  std::deque<std::string> out;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    if (end > start) out.emplace_back(path.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::string joined(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& part : parts) out += "/" + part;
  return out.empty() ? "/" : out;
}

}  // namespace

Result<std::string> resolve_tree_path(std::string_view path, bool follow_final, const SymlinkLookup& symlink_at,
                                      std::string_view tree) {
  if (!path.starts_with('/'))
    return fail(ErrorKind::kBadInput, "{}: paths inside a tree must be absolute (\"/etc/...\")", path);
  std::deque<std::string> pending = components(path);
  std::vector<std::string> done;
  int hops = 0;
  while (!pending.empty()) {
    std::string name = std::move(pending.front());
    pending.pop_front();
    if (name == ".") continue;
    if (name == "..") {
      if (!done.empty()) done.pop_back();
      continue;
    }
    done.push_back(std::move(name));
    if (pending.empty() && !follow_final) break;
    KILN_ASSIGN(std::optional<std::string> target, symlink_at(joined(done)));
    if (!target) continue;
    if (++hops > kMaxSymlinkHops)
      return fail(ErrorKind::kBadInput, "{}: too many levels of symbolic links in {}", path, tree);
    done.pop_back();
    if (target->starts_with('/')) done.clear();
    std::deque<std::string> more = components(*target);
    pending.insert(pending.begin(), more.begin(), more.end());
  }
  return joined(done);
}

std::string parent_path_of(const std::string& canonical) {
  size_t slash = canonical.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : canonical.substr(0, slash);
}

}  // namespace kiln
