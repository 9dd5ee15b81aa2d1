#include "runtime/save_file.h"

#include <fcntl.h>
#include <unistd.h>

#include "base/files.h"
#include "base/size.h"

namespace kiln {
namespace {

constexpr std::string_view kMagic = "KILN-SAVE 1\n";
constexpr uint64_t kAlignment = 4096;
constexpr size_t kMaxHeader = 1 << 20;

}  // namespace

Result<uint64_t> write_save_header(int fd, const InstanceRecord& record, const std::string& name) {
  std::string header = std::string(kMagic) + to_json(record).dump() + "\n";
  uint64_t offset = round_up(header.size(), kAlignment);
  header.resize(offset, '\0');
  KILN_TRY(pwrite_all(fd, header.data(), header.size(), 0, name));
  if (::lseek(fd, static_cast<off_t>(offset), SEEK_SET) < 0) return fail_errno("seek", name, errno);
  return offset;
}

Result<SaveHeader> read_save_header(const std::filesystem::path& file) {
  KILN_ASSIGN(UniqueFd fd, open_file(file, O_RDONLY));
  std::string head(kMaxHeader, '\0');
  ssize_t n = ::pread(fd.get(), head.data(), head.size(), 0);
  if (n < 0) return fail_errno("cannot read", file.string(), errno);
  head.resize(static_cast<size_t>(n));
  if (!head.starts_with(kMagic))
    return fail(ErrorKind::kBadInput, "{}: not a kiln save file (made by `kiln save`)", file.string());
  size_t end = head.find('\n', kMagic.size());
  if (end == std::string::npos) return fail(ErrorKind::kBadInput, "{}: damaged save file header", file.string());
  auto json = nlohmann::json::parse(head.substr(kMagic.size(), end - kMagic.size()), nullptr, false);
  if (json.is_discarded()) return fail(ErrorKind::kBadInput, "{}: damaged save file header", file.string());
  KILN_ASSIGN(InstanceRecord record, record_from_json(json, file.string()));
  return SaveHeader{std::move(record), round_up(end + 1, kAlignment)};
}

}  // namespace kiln
