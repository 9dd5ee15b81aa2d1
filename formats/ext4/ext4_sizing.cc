#include "formats/ext4/ext4_sizing.h"

#include <string>
#include <unordered_map>
#include <unordered_set>

#include "base/interrupt.h"
#include "formats/ext4/ext4_fs.h"

namespace kiln::ext4 {
namespace {

// Each extent-tree node holds a 12-byte header and 12-byte entries.
constexpr uint64_t kExtentEntrySize = 12;
constexpr uint64_t kInodeTreeEntries = 4;
// In-inode attribute space: what follows the 128-byte base and 32 bytes of
// extra fields, less the 4-byte magic and the 4-byte end marker.
constexpr uint64_t kExtraFields = 32;
constexpr uint64_t kAttrOverhead = 8;

uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

class Measure {
 public:
  explicit Measure(const Geometry& geometry) : geometry_(geometry) {
    Dir& root = dirs_.try_emplace("", packer()).first->second;
    root.names.insert("lost+found");
    root.packer.add(std::string_view("lost+found").size());
  }

  void add(const TarEntry& entry) {
    if (!entry.path.empty()) {
      auto slash = entry.path.rfind('/');
      std::string parent = slash == std::string::npos ? "" : entry.path.substr(0, slash);
      std::string name = slash == std::string::npos ? entry.path : entry.path.substr(slash + 1);
      ensure_directory(parent);
      add_name(parent, name);
      switch (entry.type) {
        case EntryType::kDirectory:
          if (!dirs_.contains(entry.path)) {
            dirs_.try_emplace(entry.path, packer());
            ++needs_.inodes;
          }
          break;
        case EntryType::kHardlink:
          needs_.blocks += file_blocks(entry);  // cpio's data on the last name
          break;
        case EntryType::kFile:
          ++needs_.inodes;
          needs_.blocks += file_blocks(entry);
          break;
        case EntryType::kSymlink:
          ++needs_.inodes;
          if (entry.link_target.size() >= kFastSymlinkMax) needs_.blocks += 1;
          break;
        default:
          ++needs_.inodes;
          break;
      }
    }
    if (needs_attribute_block(entry)) needs_.blocks += 1;
  }

  SpaceNeeds finish() const {
    SpaceNeeds out = needs_;
    for (const auto& [path, dir] : dirs_)
      out.blocks += dir.packer.blocks() + mapping_blocks(dir.packer.blocks(), 1, dir.packer.blocks());
    return out;
  }

 private:
  struct Dir {
    explicit Dir(DirectoryPacker p) : packer(p) {}
    DirectoryPacker packer;
    std::unordered_set<std::string> names;
  };

  DirectoryPacker packer() const { return DirectoryPacker(geometry_.block_size, geometry_.checksums); }

  void ensure_directory(const std::string& path) {
    if (dirs_.contains(path)) return;
    auto slash = path.rfind('/');
    std::string parent = slash == std::string::npos ? "" : path.substr(0, slash);
    ensure_directory(parent);
    add_name(parent, slash == std::string::npos ? path : path.substr(slash + 1));
    dirs_.try_emplace(path, packer());
    ++needs_.inodes;
  }

  void add_name(const std::string& parent, const std::string& name) {
    Dir& dir = dirs_.at(parent);
    if (dir.names.insert(name).second) dir.packer.add(name.size());
  }

  // Data blocks (a block shared by two sparse regions counts once) and the
  // blocks that map them.
  uint64_t file_blocks(const TarEntry& entry) const {
    const uint64_t bs = geometry_.block_size;
    uint64_t data = 0;
    uint64_t runs = 0;
    if (!entry.sparse) {
      data = ceil_div(entry.size, bs);
      runs = data > 0 ? 1 : 0;
    } else {
      uint64_t next_free = 0;  // first block not yet counted
      for (const DataRegion& region : entry.data_regions) {
        uint64_t first = std::max(region.offset / bs, next_free);
        uint64_t end = ceil_div(region.offset + region.length, bs);
        if (end > first) {
          data += end - first;
          ++runs;
          next_free = end;
        }
      }
    }
    uint64_t logical = ceil_div(entry.size, bs);
    return data + mapping_blocks(data, runs, logical);
  }

  // Blocks of an extent tree, or of indirect blocks, for `data` blocks in
  // `runs` runs spread over `logical` blocks.
  uint64_t mapping_blocks(uint64_t data, uint64_t runs, uint64_t logical) const {
    if (data == 0) return 0;
    const uint64_t bs = geometry_.block_size;
    if (!geometry_.extents) {
      // Block maps: 12 direct pointers, then indirect, double, triple.
      const uint64_t per = bs / 4;
      uint64_t rest = logical > EXT2_NDIR_BLOCKS ? logical - EXT2_NDIR_BLOCKS : 0;
      uint64_t blocks = 0;
      if (rest > 0) {
        blocks += 1;
        rest -= std::min(rest, per);
      }
      if (rest > 0) {
        uint64_t here = std::min(rest, per * per);
        blocks += 1 + ceil_div(here, per);
        rest -= here;
      }
      if (rest > 0) blocks += 1 + ceil_div(rest, per * per) + ceil_div(rest, per);
      return blocks;
    }
    // Upper bound on the extents: one per run, plus a split for every
    // maximal extent length, for every block group whose metadata a run may
    // cross, and for the allocator wrapping around at the end.
    uint64_t groups = data / kMaxExtentLength + 1;
    uint64_t extents = runs + data / kMaxExtentLength + groups + 1;
    if (extents <= kInodeTreeEntries) return 0;
    const uint64_t per_node = (bs - kExtentEntrySize) / kExtentEntrySize;
    uint64_t blocks = 0;
    for (uint64_t level = ceil_div(extents, per_node);; level = ceil_div(level, per_node)) {
      blocks += level;
      if (level <= kInodeTreeEntries) break;
    }
    return blocks;
  }

  bool needs_attribute_block(const TarEntry& entry) const {
    if (entry.xattrs.empty()) return false;
    if (geometry_.inode_size <= EXT2_GOOD_OLD_INODE_SIZE + kExtraFields + kAttrOverhead) return true;
    uint64_t room = geometry_.inode_size - EXT2_GOOD_OLD_INODE_SIZE - kExtraFields - kAttrOverhead;
    uint64_t used = 0;
    for (const auto& [name, value] : entry.xattrs) {
      // The namespace prefix ("user.", "security.") is stored as an index.
      size_t dot = name.find('.');
      size_t suffix = dot == std::string::npos ? name.size() : name.size() - dot - 1;
      used += EXT2_EXT_ATTR_LEN(suffix) + EXT2_EXT_ATTR_SIZE(value.size());
    }
    return used > room;
  }

  const Geometry& geometry_;
  std::unordered_map<std::string, Dir> dirs_;
  SpaceNeeds needs_;
};

}  // namespace

Result<SpaceNeeds> measure_archive(TarReader& reader, const Geometry& geometry) {
  Measure measure(geometry);
  TarEntry entry;
  for (;;) {
    KILN_TRY(check_interrupted());
    KILN_ASSIGN(bool more, reader.next(entry));
    if (!more) break;
    measure.add(entry);
  }
  return measure.finish();
}

}  // namespace kiln::ext4
