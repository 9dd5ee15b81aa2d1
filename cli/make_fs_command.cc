// kiln make-fs ARCHIVE IMAGE: a filesystem image from a rootfs archive, as
// virt-make-fs does, but streamed with libext2fs: no appliance, no mount, no
// root needed.
#include <sys/stat.h>
#include <unistd.h>

#include "base/files.h"
#include "base/size.h"
#include "builder/baker.h"
#include "cli/command.h"
#include "crypto/hash.h"
#include "formats/ext4_image.h"

namespace kiln::cli {
namespace {

struct MakeFsFlags {
  std::string archive;
  std::string image;
  std::string size;
  std::string type = "ext4";
  std::string label;
  std::string uuid_seed;
};

// "2G" is a size; "+200M" is free space on top of what the content needs;
// "" is exactly what it needs.
Result<uint64_t> image_size(const MakeFsFlags& flags, const Ext4Options& options) {
  bool extra = flags.size.starts_with('+');
  if (!flags.size.empty() && !extra) return parse_size(flags.size);
  KILN_ASSIGN(uint64_t needed, Ext4Image::minimum_size(flags.archive, options));
  if (!extra) return needed;
  KILN_ASSIGN(uint64_t more, parse_size(flags.size.substr(1)));
  return round_up(needed + more, kMiB);
}

Result<> make_fs(const MakeFsFlags& flags) {
  KILN_ASSIGN(auto epoch, source_date_epoch_from_env());
  Ext4Options options;
  options.fs_type = flags.type;
  options.label = flags.label;
  options.timestamp = epoch.value_or(static_cast<int64_t>(std::time(nullptr)));
  if (epoch) {
    // Reproducible: identifiers follow from the content, not from chance.
    KILN_ASSIGN(std::string digest, file_digest_hex(flags.archive));
    options.uuid = Uuid::from_name("make-fs/" + digest + "/uuid");
    options.hash_seed = Uuid::from_name("make-fs/" + digest + "/hash-seed");
  } else {
    options.uuid = Uuid::random();
    options.hash_seed = Uuid::random();
  }
  KILN_ASSIGN(options.size_bytes, image_size(flags, options));
  options.size_bytes = options.size_bytes / 4096 * 4096;
  KILN_ASSIGN(TarReader reader, TarReader::open(flags.archive));
  // Built under a temporary name, renamed only when complete.
  KILN_ASSIGN(AtomicFile target, AtomicFile::create(flags.image));
  KILN_ASSIGN(Ext4Image fs, Ext4Image::format(target.temp_path(), options));
  Reporter reporter(Reporter::detect(false));
  reporter.step("make-fs", fmt::format("{} {} from {}", flags.type, format_size(options.size_bytes), flags.archive));
  ImportOptions import;
  import.progress = [&reporter](uint64_t done, uint64_t total) { reporter.progress(done, total); };
  KILN_TRY(fs.import(reader, import));
  KILN_TRY(fs.close());
  KILN_TRY(target.commit());
  reporter.done();
  return {};
}

}  // namespace

void register_make_fs(CLI::App& root, Registry& registry) {
  auto flags = std::make_shared<MakeFsFlags>();
  CLI::App* app = root.add_subcommand("make-fs", "Make a filesystem image from a rootfs archive (like virt-make-fs)");
  app->add_option("archive", flags->archive, "tar (plain, .gz, .xz, .zst) or cpio (plain, .gz)")->required();
  app->add_option("image", flags->image, "Image file to write")->required();
  app->add_option("--size", flags->size,
                  "SIZE (e.g. 2G), or +SIZE of free space beyond what the content needs (default: just enough)");
  app->add_option("-t,--type", flags->type, "Filesystem type")->check(CLI::IsMember({"ext4", "ext3", "ext2"}));
  app->add_option("--label", flags->label, "Filesystem label");
  app->footer("With SOURCE_DATE_EPOCH set, the same archive gives a byte-identical image.");
  registry.push_back({app, [flags] { return finish(make_fs(*flags), [] {}); }});
}

}  // namespace kiln::cli
