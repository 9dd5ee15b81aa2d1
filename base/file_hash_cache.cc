#include "base/file_hash_cache.h"

#include <sys/stat.h>

#include <ctime>

#include <nlohmann/json.hpp>

#include "base/files.h"
#include "base/hash.h"

namespace kiln {
namespace {

constexpr int64_t kSettledNs = 2'000'000'000;

int64_t nanoseconds(const timespec& time) { return static_cast<int64_t>(time.tv_sec) * 1000000000 + time.tv_nsec; }

nlohmann::json identity(const struct stat& st) {
  return {{"size", static_cast<int64_t>(st.st_size)},
          {"mtime_ns", nanoseconds(st.st_mtim)},
          {"ctime_ns", nanoseconds(st.st_ctim)}};
}

}  // namespace

Result<std::string> FileHashCache::sha256(const std::filesystem::path& file) const {
  struct stat before;
  if (::stat(file.c_str(), &before) != 0) return fail_errno("cannot read", file.string(), errno);
  std::filesystem::path entry = dir_ / fmt::format("{}-{}.json", before.st_dev, before.st_ino);
  if (auto text = read_file(entry)) {
    auto json = nlohmann::json::parse(*text, nullptr, false);
    if (json.is_object() && json.value("file", nlohmann::json()) == identity(before) && json.contains("sha256"))
      return json["sha256"].get<std::string>();
  }
  KILN_ASSIGN(std::string hash, file_digest_hex(file));
  // Kept only if the file did not change while it was read, nor lately.
  struct stat after;
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  bool settled = nanoseconds(now) - nanoseconds(before.st_mtim) > kSettledNs;
  if (settled && ::stat(file.c_str(), &after) == 0 && identity(after) == identity(before)) {
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    nlohmann::json json = {{"path", file.string()}, {"file", identity(before)}, {"sha256", hash}};
    (void)write_file_atomic(entry, json.dump() + "\n");
  }
  return hash;
}

}  // namespace kiln
