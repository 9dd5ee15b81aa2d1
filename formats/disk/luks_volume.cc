#include "formats/disk/luks_volume.h"

#include <sys/stat.h>

#include <memory>
#include <string>
#include <vector>

#include <libfdisk/libfdisk.h>

namespace kiln {
namespace {

struct Partition {
  int number = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
  std::string name;
};

struct ContextDeleter {
  void operator()(fdisk_context* context) const { fdisk_unref_context(context); }
};
struct TableDeleter {
  void operator()(fdisk_table* table) const { fdisk_unref_table(table); }
};

// The partitions of a disk image's table, read-only; none when it has no
// table libfdisk knows.
Result<std::vector<Partition>> read_partitions(const std::filesystem::path& image) {
  std::unique_ptr<fdisk_context, ContextDeleter> context(fdisk_new_context());
  if (!context) return fail(ErrorKind::kFailed, "{}: cannot create a libfdisk context", image.string());
  if (int rc = fdisk_assign_device(context.get(), image.c_str(), 1); rc != 0)
    return fail(ErrorKind::kBadInput, "{}: cannot read it as a disk image ({})", image.string(), rc);
  std::vector<Partition> out;
  if (!fdisk_has_label(context.get())) return out;
  fdisk_table* raw = nullptr;
  if (fdisk_get_partitions(context.get(), &raw) != 0 || !raw)
    return fail(ErrorKind::kBadInput, "{}: cannot read its partition table", image.string());
  std::unique_ptr<fdisk_table, TableDeleter> table(raw);
  uint64_t sector = fdisk_get_sector_size(context.get());
  for (size_t i = 0; i < fdisk_table_get_nents(table.get()); ++i) {
    fdisk_partition* partition = fdisk_table_get_partition(table.get(), i);
    if (!partition || !fdisk_partition_has_start(partition) || !fdisk_partition_has_size(partition)) continue;
    const char* name = fdisk_partition_get_name(partition);
    out.push_back({static_cast<int>(fdisk_partition_get_partno(partition)) + 1,
                   fdisk_partition_get_start(partition) * sector, fdisk_partition_get_size(partition) * sector,
                   name ? name : ""});
  }
  fdisk_deassign_device(context.get(), 1);
  return out;
}

}  // namespace

Result<LuksRegion> find_luks_volume(const std::filesystem::path& image, std::optional<int> partition) {
  struct stat st;
  if (::stat(image.c_str(), &st) != 0) return fail_errno("cannot open", image.string(), errno);
  std::string file = image.filename().string();
  KILN_ASSIGN(bool whole, has_luks_header(image, 0));
  if (whole && !partition) return LuksRegion{image, 0, static_cast<uint64_t>(st.st_size), file};
  KILN_ASSIGN(std::vector<Partition> partitions, read_partitions(image));
  std::vector<LuksRegion> found;
  std::string listed;
  for (const Partition& p : partitions) {
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
