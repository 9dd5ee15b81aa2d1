#include "formats/disk/luks_volume.h"

#include <sys/stat.h>

#include <string>
#include <vector>

#include "formats/disk/partition_table.h"

namespace kiln {

Result<LuksRegion> find_luks_volume(const std::filesystem::path& image, std::optional<int> partition) {
  struct stat st;
  if (::stat(image.c_str(), &st) != 0) return fail_errno("cannot open", image.string(), errno);
  std::string file = image.filename().string();
  KILN_ASSIGN(bool whole, has_luks_header(image, 0));
  if (whole && !partition) return LuksRegion{image, 0, static_cast<uint64_t>(st.st_size), file};
  KILN_ASSIGN(PartitionTable table, read_partition_table(image));
  std::vector<LuksRegion> found;
  std::string listed;
  for (const TablePartition& p : table.partitions) {
    KILN_ASSIGN(bool luks, has_luks_header(image, p.offset));
    std::string description = p.name.empty() ? fmt::format("{} partition {}", file, p.number)
                                             : fmt::format("{} partition {} ({})", file, p.number, p.name);
    listed += fmt::format("{}: {}\n", description, luks ? "LUKS" : "not LUKS");
    if (partition && p.number != *partition) continue;
    if (luks) found.push_back({image, p.offset, p.size, description});
  }
  if (partition && found.empty())
    return std::unexpected(Error{ErrorKind::kBadInput,
                                 fmt::format("{}: partition {} is not a LUKS volume", image.string(), *partition),
                                 {}, listed});
  if (found.empty())
    return std::unexpected(Error{ErrorKind::kBadInput,
                                 fmt::format("{}: no LUKS volume in it (neither the file nor a partition starts "
                                             "with a LUKS header)",
                                             image.string()),
                                 {}, listed});
  if (found.size() > 1)
    return std::unexpected(Error{ErrorKind::kBadInput,
                                 fmt::format("{}: {} partitions hold LUKS volumes; pick one with --partition N",
                                             image.string(), found.size()),
                                 {}, listed});
  return found.front();
}

}  // namespace kiln
