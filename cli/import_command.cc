// kiln import DISK|BUNDLE: the command line of builder/disk_import.
#include <nlohmann/json.hpp>

#include "base/size.h"
#include "base/vm_shape.h"
#include "builder/disk_import.h"
#include "cli/command.h"

namespace kiln::cli {
namespace {

struct ImportFlags {
  ImportRequest request;
  std::string memory;
  bool json = false;
};

Result<ImportResult> run_import(ImportFlags flags) {
  if (!flags.memory.empty()) {
    KILN_ASSIGN(uint64_t bytes, parse_size(flags.memory));
    if (std::string problem = vm_memory_problem(bytes); !problem.empty())
      return fail(ErrorKind::kBadInput, "--memory {}: {}", flags.memory, problem);
    flags.request.memory_mib = bytes / kMiB;
  }
  if (flags.request.vcpus) {
    if (std::string problem = vm_vcpus_problem(*flags.request.vcpus); !problem.empty())
      return fail(ErrorKind::kBadInput, "--vcpus: {}", problem);
  }
  Reporter reporter(Reporter::detect(flags.json));
  KILN_ASSIGN(ImportResult result, import_disk_image(flags.request, reporter));
  if (reporter.mode() == Reporter::Mode::kJson) {
    nlohmann::json artifacts = nlohmann::json::array();
    for (const ManifestArtifact& a : result.manifest.artifacts)
      artifacts.push_back({{"file", a.file}, {"size", a.size}, {"sha256", a.sha256}});
    nlohmann::json event = {{"output", result.output_dir.string()},
                            {"name", result.manifest.name},
                            {"architecture", result.manifest.architecture},
                            {"root", result.root},
                            {"kernel", result.manifest.kernel},
                            {"memory_mib", result.manifest.memory_mib},
                            {"vcpus", result.manifest.vcpus},
                            {"seconds", result.seconds},
                            {"artifacts", artifacts}};
    if (!result.manifest.imported_config.empty()) event["config"] = result.manifest.imported_config;
    reporter.event("result", event);
  } else {
    fmt::print("Imported {} ({}, {}) into {} in {:.1f} s\n  root: {}\n  kernel: {}\n", result.manifest.name,
               result.manifest.imported_format, result.manifest.architecture, result.output_dir.string(),
               result.seconds, result.root, result.manifest.kernel);
    if (!result.manifest.imported_config.empty()) {
      fmt::print("  config: {} ({} MiB, {} vCPUs)\n", result.manifest.imported_config, result.manifest.memory_mib,
                 result.manifest.vcpus);
      for (const ManifestImportedDisk& d : result.manifest.imported_disks)
        if (d.use == "swap")
          fmt::print("  swap: {} ({}) as {}; `kiln boot {}/{}.xl.cfg` attaches it\n", d.member, d.device, d.file,
                     result.output_dir.string(), result.manifest.name);
    }
  }
  return result;
}

}  // namespace

void register_import(CLI::App& root, Registry& registry) {
  auto flags = std::make_shared<ImportFlags>();
  CLI::App* app = root.add_subcommand(
      "import", "Turn a disk image or a Xen-era bundle kiln did not bake into an image `kiln boot` runs");
  app->add_option("disk", flags->request.source,
                  "A disk image in any format qemu-img reads (raw, qcow2, vmdk, vhdx...), partitioned (GPT or "
                  "MBR) or a bare ext2/3/4 filesystem; or a jailtime-style bundle: a tar archive (plain, gzip, "
                  "bzip2, xz...) of a root filesystem image, a swap image and a Xen config (*.cfg)")
      ->required();
  app->add_option("-o,--output", flags->request.output_dir, "Output directory (default: out/NAME)");
  app->add_option("--name", flags->request.name,
                  "Image name (default: a bundle's config's name, else the file's name up to its first '.')");
  app->add_option("--memory", flags->memory,
                  "Memory `kiln boot` gives it by default, e.g. 1G (default: a bundle's config's, else 1G)");
  app->add_option("--vcpus", flags->request.vcpus,
                  "Virtual CPUs `kiln boot` gives it by default (default: a bundle's config's, else 2)");
  app->add_option("--luks-passphrase-file", flags->request.luks_passphrase_file,
                  "Open the disk's LUKS volume with this file's first line, to find the root inside it (the image "
                  "stays encrypted; the passphrase is kept in memory only)");
  app->add_flag("--json", flags->json, "Progress and result as JSON lines on stdout");
  app->footer(
      "The root filesystem is the GPT partition of a root type (Discoverable Partitions Specification), else the "
      "one ext2/3/4 filesystem with /etc/os-release (of several, the one its own /etc/fstab mounts on /). The "
      "kernel and initramfs come from its /boot or from the partition its fstab mounts there. kiln's guest agent "
      "is installed into the copy's root, so that `kiln boot --wait-ready` and `kiln exec` work; the source file "
      "is only read. A root on LVM is read in its (linear) logical volume. A LUKS volume is opened with "
      "--luks-passphrase-file only, decrypted into a private file beside the output and the root's changed blocks "
      "encrypted back; the output stays encrypted, and `kiln boot --luks-passphrase-file` unlocks it. No mounts, "
      "no loop devices, no device-mapper.\n\n"
      "A bundle is told from a disk by its content. Only its regular files are unpacked, beside the output. Its "
      "one *.cfg is read as a Xen config: the root image is the disk its root= names (else the first with an "
      "ext2/3/4 root filesystem), every other disk must be a swap area (carried as swap.img), and its memory and "
      "vcpus become the image's defaults. NAME.xl.cfg in the output boots the image with the swap attached "
      "(`kiln boot DIR/NAME.xl.cfg`); `kiln boot DIR` boots it without. See docs/import.md.");
  registry.push_back({app, [flags] { return finish(run_import(*flags), [](const ImportResult&) {}); }});
}

}  // namespace kiln::cli
