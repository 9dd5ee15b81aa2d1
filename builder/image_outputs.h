// ImageOutputs: the "finalize" stage. From the assembled images it writes
// what the recipe's [output] asks for besides them (disk.qcow2, NAME.xl.cfg,
// NAME.libvirt.xml), drops intermediate files the recipe did not ask for,
// and writes manifest.json: the recipe hash, kiln's version, the installed
// packages, and each artifact's size and sha256.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/reporter.h"
#include "builder/assembler.h"
#include "builder/plan.h"
#include "formats/image/image_manifest.h"

namespace kiln {

struct FinalizedOutput {
  ImageManifest manifest;  // what manifest.json says, its artifacts included
};

// `dir` is where everything is being built; `final_dir` is where the output
// directory will be once complete (the configs name absolute paths in it).
Result<FinalizedOutput> finalize_outputs(const Plan& plan, const AssembledImage& image,
                                         const std::filesystem::path& dir,
                                         const std::filesystem::path& final_dir, Reporter& reporter);

}  // namespace kiln
