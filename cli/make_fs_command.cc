// kiln make-fs ARCHIVE IMAGE: the command line of builder/archive_filesystem.
#include "base/source_date_epoch.h"
#include "builder/archive_filesystem.h"
#include "cli/command.h"

namespace kiln::cli {
namespace {

Result<> make_fs(ArchiveFilesystemRequest request) {
  KILN_ASSIGN(request.epoch, source_date_epoch_from_env());
  Reporter reporter(Reporter::detect(false));
  return make_archive_filesystem(request, reporter);
}

}  // namespace

void register_make_fs(CLI::App& root, Registry& registry) {
  auto request = std::make_shared<ArchiveFilesystemRequest>();
  CLI::App* app = root.add_subcommand("make-fs", "Make a filesystem image from a rootfs archive (like virt-make-fs)");
  app->add_option("archive", request->archive, "tar (plain, .gz, .xz, .zst) or cpio (plain, .gz)")->required();
  app->add_option("image", request->image, "Image file to write")->required();
  app->add_option("--size", request->size,
                  "SIZE (e.g. 2G), or +SIZE of free space beyond what the content needs (default: just enough)");
  app->add_option("-t,--type", request->type, "Filesystem type")->check(CLI::IsMember({"ext4", "ext3", "ext2"}));
  app->add_option("--label", request->label, "Filesystem label");
  app->footer("With SOURCE_DATE_EPOCH set, the same archive gives a byte-identical image.");
  registry.push_back({app, [request] { return finish(make_fs(*request), [] {}); }});
}

}  // namespace kiln::cli
