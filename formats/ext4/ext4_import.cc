// The archive importer: streams tar/cpio entries into an open filesystem.
//
// Inodes and data blocks are allocated in archive order, each file's data
// contiguously and written in large pieces. Directories are kept in memory
// while the archive streams (no O(n^2) insertion into on-disk directories)
// and written once at the end, each as one contiguous run of blocks.
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/interrupt.h"
#include "formats/ext4/ext4_fs.h"

namespace kiln::ext4 {
namespace {

// How often (in entries) the progress callback hears from the import.
constexpr uint64_t kProgressEvery = 256;

struct Attributes {
  uint32_t mode = 0755;
  uint32_t uid = 0;
  uint32_t gid = 0;
  int64_t mtime = 0;
  uint32_t mtime_nsec = 0;
};

struct Child {
  std::string name;
  ext2_ino_t ino = 0;
  uint8_t type = EXT2_FT_UNKNOWN;
};

// A directory as the import sees it: its entries in the order they came,
// and what to write for it at the end.
struct Directory {
  std::string path;  // "/" or "/usr/bin", for messages
  ext2_ino_t ino = 0;
  ext2_ino_t parent = 0;
  bool on_disk = false;  // existed before the import: its old blocks are freed on rewrite
  bool dirty = false;    // must be written at the end
  bool removed = false;  // replaced by a non-directory
  std::vector<Child> children;
  std::unordered_map<std::string, size_t> index;
  std::optional<Attributes> attributes;  // from the archive; else kept (on disk) or 0755 root
  std::vector<std::pair<std::string, std::string>> xattrs;

  Child* find(std::string_view name) {
    auto it = index.find(std::string(name));
    return it == index.end() ? nullptr : &children[it->second];
  }
  void add(std::string name, ext2_ino_t child, uint8_t type) {
    index.emplace(name, children.size());
    children.push_back({std::move(name), child, type});
    dirty = true;
  }
};

std::pair<std::string_view, std::string_view> split_path(std::string_view path) {
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return {"", path};
  return {path.substr(0, slash), path.substr(slash + 1)};
}

// A path from the archive as messages show it (escaped, cut if long).
std::string display(std::string_view path) { return fmt::format("/{}", printable_name(path)); }

const char* type_name(EntryType type) {
  switch (type) {
    case EntryType::kFile: return "file";
    case EntryType::kDirectory: return "directory";
    case EntryType::kSymlink: return "symlink";
    case EntryType::kHardlink: return "hardlink";
    case EntryType::kCharDevice: return "character device";
    case EntryType::kBlockDevice: return "block device";
    case EntryType::kFifo: return "fifo";
    case EntryType::kSocket: return "socket";
  }
  return "entry";
}

struct DirIterateContext {
  Directory* directory;
};

int collect_entry(ext2_ino_t, int, ext2_dir_entry* dirent, int, int, char*, void* data) {
  auto* context = static_cast<DirIterateContext*>(data);
  std::string name(dirent->name, ext2fs_dirent_name_len(dirent));
  if (name == ".") return 0;
  if (name == "..") {
    context->directory->parent = dirent->inode;
    return 0;
  }
  Directory& directory = *context->directory;
  directory.index.emplace(name, directory.children.size());
  directory.children.push_back(
      {std::move(name), dirent->inode, static_cast<uint8_t>(ext2fs_dirent_file_type(dirent))});
  return 0;
}

class Importer {
 public:
  Importer(Filesystem& fs, TarReader& reader, const ImportOptions& options)
      : fs_(fs), reader_(reader), options_(options) {}

  Result<ImportStats> run() {
    TarEntry entry;
    for (;;) {
      KILN_TRY(check_interrupted());
      KILN_ASSIGN(bool more, reader_.next(entry));
      if (!more) break;
      if (options_.select && !options_.select(entry)) continue;
      if (auto added = add(entry); !added)
        return std::unexpected(std::move(added).error().with_context(
            fmt::format("{}: importing {}", reader_.name(), display(entry.path))));
      if (++stats_.entries % kProgressEvery == 0) report_progress();
    }
    if (auto written = write_directories(); !written)
      return std::unexpected(std::move(written).error().with_context(
          fmt::format("{}: writing the directories", reader_.name())));
    report_progress();
    return stats_;
  }

 private:
  void report_progress() {
    if (options_.progress) options_.progress(reader_.position(), reader_.total_size());
  }

  // SOURCE_DATE_EPOCH semantics: nothing is newer than the filesystem.
  Attributes attributes_of(const TarEntry& entry) const {
    Attributes out{entry.mode & 07777, entry.uid, entry.gid, entry.mtime, entry.mtime_nsec};
    if (out.mtime > fs_.now()) {
      out.mtime = fs_.now();
      out.mtime_nsec = 0;
    }
    return out;
  }

  void apply(Inode& inode, uint16_t type_bits, const Attributes& attributes) const {
    inode->i_mode = static_cast<__u16>(type_bits | (attributes.mode & 07777));
    inode.set_owner(attributes.uid, attributes.gid);
    inode.set_times(attributes.mtime, attributes.mtime_nsec);
  }

  Result<> add(const TarEntry& entry) {
    if (entry.path.empty()) {
      if (entry.type != EntryType::kDirectory)
        return fail(ErrorKind::kBadInput, "the root entry is a {}, not a directory",
                    type_name(entry.type));
      KILN_ASSIGN(Directory * root, directory(EXT2_ROOT_INO, "/"));
      set_directory_attributes(*root, entry);
      return {};
    }
    auto [parent_path, name] = split_path(entry.path);
    if (name.size() > kMaxNameLength)
      return fail(ErrorKind::kBadInput, "the name '{}' is longer than {} bytes",
                  printable_name(name), kMaxNameLength);
    KILN_ASSIGN(Directory * parent, walk(parent_path));
    switch (entry.type) {
      case EntryType::kDirectory: return add_directory(*parent, name, entry);
      case EntryType::kHardlink: return add_hardlink(*parent, name, entry);
      default: return add_inode(*parent, name, entry);
    }
  }

  void set_directory_attributes(Directory& directory, const TarEntry& entry) {
    directory.attributes = attributes_of(entry);
    directory.xattrs = entry.xattrs;
    directory.dirty = true;
  }

  // The directory with this inode, read from disk the first time it is needed.
  Result<Directory*> directory(ext2_ino_t ino, std::string path) {
    if (auto it = by_inode_.find(ino); it != by_inode_.end()) return it->second;
    auto loaded = std::make_unique<Directory>();
    loaded->path = std::move(path);
    loaded->ino = ino;
    loaded->on_disk = true;
    DirIterateContext context{loaded.get()};
    if (errcode_t rc = ext2fs_dir_iterate2(fs_.get(), ino, 0, nullptr, collect_entry, &context);
        rc != 0)
      return failure(rc, fs_.name(), fmt::format("cannot read directory {}", loaded->path));
    // Without the filetype feature the entries do not say what they are.
    for (Child& child : loaded->children) {
      if (child.type != EXT2_FT_UNKNOWN) continue;
      KILN_ASSIGN(Inode inode, fs_.read_inode(child.ino, loaded->path + "/" + child.name));
      child.type = ext2_file_type(inode->i_mode);
    }
    return remember(std::move(loaded));
  }

  Directory* remember(std::unique_ptr<Directory> directory) {
    Directory* raw = directory.get();
    by_inode_[raw->ino] = raw;
    directories_.push_back(std::move(directory));
    return raw;
  }

  // The directory at `path`, creating missing ones as tar does (0755, root).
  Result<Directory*> walk(std::string_view path) {
    KILN_ASSIGN(Directory * current, directory(EXT2_ROOT_INO, "/"));
    size_t start = 0;
    while (start < path.size()) {
      size_t slash = path.find('/', start);
      if (slash == std::string_view::npos) slash = path.size();
      std::string_view name = path.substr(start, slash - start);
      std::string_view so_far = path.substr(0, slash);
      if (Child* child = current->find(name); child == nullptr) {
        KILN_ASSIGN(current, create_directory(*current, name, so_far, nullptr));
      } else if (child->type != EXT2_FT_DIR) {
        return fail(ErrorKind::kBadInput,
                    "{} is not a directory in the image, so nothing can be put inside it",
                    display(so_far));
      } else {
        KILN_ASSIGN(current, directory(child->ino, display(so_far)));
      }
      start = slash + 1;
    }
    return current;
  }

  // A new directory in `parent`, in the slot of `replacing` if given.
  Result<Directory*> create_directory(Directory& parent, std::string_view name,
                                      std::string_view path, Child* replacing) {
    KILN_ASSIGN(ext2_ino_t ino, fs_.allocate_inode(parent.ino, true, display(path)));
    auto created = std::make_unique<Directory>();
    created->path = display(path);
    created->ino = ino;
    created->parent = parent.ino;
    created->dirty = true;
    if (replacing != nullptr) {
      replacing->ino = ino;
      replacing->type = EXT2_FT_DIR;
      parent.dirty = true;
    } else {
      parent.add(std::string(name), ino, EXT2_FT_DIR);
    }
    return remember(std::move(created));
  }

  Result<> add_directory(Directory& parent, std::string_view name, const TarEntry& entry) {
    Child* existing = parent.find(name);
    Directory* target = nullptr;
    if (existing != nullptr && existing->type == EXT2_FT_DIR) {
      KILN_ASSIGN(target, directory(existing->ino, display(entry.path)));
    } else {
      if (existing != nullptr) KILN_TRY(fs_.drop_link(existing->ino, display(entry.path)));
      KILN_ASSIGN(target, create_directory(parent, name, entry.path, existing));
    }
    set_directory_attributes(*target, entry);
    return {};
  }

  // Makes room for a new entry where `existing` is: tar replaces a file,
  // and an empty directory, but refuses to remove a directory's contents.
  Result<> remove_existing(Child& existing, const TarEntry& entry) {
    if (existing.type != EXT2_FT_DIR) return fs_.drop_link(existing.ino, display(entry.path));
    KILN_ASSIGN(Directory * old, directory(existing.ino, display(entry.path)));
    if (!old->children.empty())
      return fail(ErrorKind::kBadInput,
                  "the archive replaces the non-empty directory {} with a {}; "
                  "remove the directory's entries from the archive first",
                  display(entry.path), type_name(entry.type));
    if (old->on_disk) {
      KILN_TRY(fs_.release_inode(old->ino, old->path));
    } else {
      // Never written: only its inode number is taken.
      ext2fs_inode_alloc_stats2(fs_.get(), old->ino, -1, 1);
    }
    old->removed = true;
    by_inode_.erase(old->ino);
    return {};
  }

  void place(Directory& parent, std::string_view name, Child* slot, ext2_ino_t ino,
             uint8_t type) {
    if (slot == nullptr) {
      parent.add(std::string(name), ino, type);
      return;
    }
    slot->ino = ino;
    slot->type = type;
    parent.dirty = true;
  }

  Result<> add_inode(Directory& parent, std::string_view name, const TarEntry& entry) {
    Child* existing = parent.find(name);
    if (existing != nullptr) KILN_TRY(remove_existing(*existing, entry));
    std::string path = display(entry.path);
    KILN_ASSIGN(ext2_ino_t ino, fs_.allocate_inode(parent.ino, false, path));
    Inode inode = fs_.new_inode_buffer();
    apply(inode, mode_bits_of(entry.type), attributes_of(entry));
    inode->i_links_count = 1;
    switch (entry.type) {
      case EntryType::kFile:
        KILN_TRY(write_content(ino, inode, entry));
        break;
      case EntryType::kSymlink:
        KILN_TRY(write_symlink(fs_, ino, inode, entry.link_target, path));
        break;
      case EntryType::kCharDevice:
      case EntryType::kBlockDevice:
        set_device(inode, entry.rdev_major, entry.rdev_minor);
        break;
      default:
        break;
    }
    KILN_TRY(fs_.write_inode(ino, inode, path));
    KILN_TRY(fs_.set_xattrs(ino, entry.xattrs, path));
    place(parent, name, existing, ino, file_type_of(entry.type));
    return {};
  }

  Result<> add_hardlink(Directory& parent, std::string_view name, const TarEntry& entry) {
    auto [target_dir, target_name] = split_path(entry.link_target);
    Child* target = nullptr;
    if (auto found = find_directory(target_dir); found != nullptr) target = found->find(target_name);
    if (target == nullptr || target->type == EXT2_FT_DIR)
      return fail(ErrorKind::kBadInput,
                  "hardlink to {}, which is not a file the archive created before it",
                  display(entry.link_target));
    ext2_ino_t ino = target->ino;
    uint8_t type = target->type;
    std::string path = display(entry.path);
    Child* existing = parent.find(name);
    if (existing == nullptr || existing->ino != ino) {
      if (existing != nullptr) KILN_TRY(remove_existing(*existing, entry));
      KILN_TRY(fs_.add_link(ino, path));
      place(parent, name, existing, ino, type);
    }
    // cpio stores a hardlinked file's data with its last name.
    if (entry.size > 0 && type == EXT2_FT_REG_FILE) {
      KILN_ASSIGN(Inode inode, fs_.read_inode(ino, path));
      KILN_TRY(fs_.release_blocks(ino, inode, path));
      KILN_TRY(write_content(ino, inode, entry));
      KILN_TRY(fs_.write_inode(ino, inode, path));
    }
    return {};
  }

  // An existing directory, without creating anything; nullptr if missing.
  Directory* find_directory(std::string_view path) {
    auto current = directory(EXT2_ROOT_INO, "/");
    if (!current) return nullptr;
    Directory* at = *current;
    size_t start = 0;
    while (start < path.size()) {
      size_t slash = path.find('/', start);
      if (slash == std::string_view::npos) slash = path.size();
      Child* child = at->find(path.substr(start, slash - start));
      if (child == nullptr || child->type != EXT2_FT_DIR) return nullptr;
      auto next = directory(child->ino, display(path.substr(0, slash)));
      if (!next) return nullptr;
      at = *next;
      start = slash + 1;
    }
    return at;
  }

  Result<> write_content(ext2_ino_t ino, Inode& inode, const TarEntry& entry) {
    std::string path = display(entry.path);
    ContentWriter writer(fs_, path, /*zero_blocks_as_holes=*/true);
    DataChunk chunk;
    for (;;) {
      KILN_ASSIGN(bool more, reader_.read_data(chunk));
      if (!more) break;
      KILN_TRY(check_interrupted());
      KILN_TRY(writer.write(chunk.offset, chunk.data, chunk.size));
      stats_.data_bytes += chunk.size;
    }
    KILN_ASSIGN(std::vector<Extent> extents, writer.finish());
    KILN_TRY(fs_.attach(ino, inode, extents, path));
    if (errcode_t rc = ext2fs_inode_size_set(fs_.get(), inode.base(), entry.size); rc != 0)
      return failure(rc, fs_.name(), fmt::format("cannot set the size of {}", path));
    return {};
  }

  Result<> write_directories() {
    for (auto& directory : directories_) {
      if (directory->removed || !directory->dirty) continue;
      KILN_TRY(check_interrupted());
      KILN_TRY(write_directory(*directory));
    }
    return {};
  }

  Result<> write_directory(Directory& directory) {
    std::vector<DirEntry> entries;
    entries.reserve(directory.children.size());
    uint32_t subdirectories = 0;
    for (const Child& child : directory.children) {
      entries.push_back({child.name, child.ino, child.type});
      if (child.type == EXT2_FT_DIR) ++subdirectories;
    }
    Inode inode = fs_.new_inode_buffer();
    if (directory.on_disk) {
      KILN_ASSIGN(inode, fs_.read_inode(directory.ino, directory.path));
      KILN_TRY(fs_.release_blocks(directory.ino, inode, directory.path));
      inode->i_flags &= ~EXT2_INDEX_FL;  // rewritten as a linear directory
    } else {
      apply(inode, LINUX_S_IFDIR, Attributes{0755, 0, 0, fs_.now(), 0});
    }
    if (directory.attributes) apply(inode, LINUX_S_IFDIR, *directory.attributes);

    std::vector<char> blocks = build_directory(fs_, directory.ino, directory.parent, entries);
    ContentWriter writer(fs_, directory.path);
    KILN_TRY(writer.write(0, blocks.data(), blocks.size()));
    KILN_ASSIGN(std::vector<Extent> extents, writer.finish());
    KILN_TRY(fs_.attach(directory.ino, inode, extents, directory.path));
    if (errcode_t rc = ext2fs_inode_size_set(fs_.get(), inode.base(), blocks.size()); rc != 0)
      return failure(rc, fs_.name(), fmt::format("cannot set the size of {}", directory.path));

    uint32_t links = 2 + subdirectories;
    if (links >= EXT2_LINK_MAX) {
      // dir_nlink: a count of 1 means "too many to count".
      if (!ext2fs_has_feature_dir_nlink(fs_.get()->super))
        return fail(ErrorKind::kBadInput, "{}: {} has {} subdirectories, more than {} allows",
                    fs_.name(), directory.path, subdirectories, "a filesystem without dir_nlink");
      links = 1;
    }
    inode->i_links_count = static_cast<__u16>(links);
    KILN_TRY(fs_.write_inode(directory.ino, inode, directory.path));
    return fs_.set_xattrs(directory.ino, directory.xattrs, directory.path);
  }

  static uint8_t ext2_file_type(uint16_t mode) {
    if (LINUX_S_ISREG(mode)) return EXT2_FT_REG_FILE;
    if (LINUX_S_ISDIR(mode)) return EXT2_FT_DIR;
    if (LINUX_S_ISLNK(mode)) return EXT2_FT_SYMLINK;
    if (LINUX_S_ISCHR(mode)) return EXT2_FT_CHRDEV;
    if (LINUX_S_ISBLK(mode)) return EXT2_FT_BLKDEV;
    if (LINUX_S_ISFIFO(mode)) return EXT2_FT_FIFO;
    if (LINUX_S_ISSOCK(mode)) return EXT2_FT_SOCK;
    return EXT2_FT_UNKNOWN;
  }

  Filesystem& fs_;
  TarReader& reader_;
  const ImportOptions& options_;
  ImportStats stats_;
  // In the order they were created or read, which is the order they are
  // written in: deterministic.
  std::vector<std::unique_ptr<Directory>> directories_;
  std::unordered_map<ext2_ino_t, Directory*> by_inode_;
};

}  // namespace

Result<ImportStats> import_archive(Filesystem& fs, TarReader& reader,
                                   const ImportOptions& options) {
  return Importer(fs, reader, options).run();
}

}  // namespace kiln::ext4
