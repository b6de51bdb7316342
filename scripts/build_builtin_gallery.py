"""Build the built-in reference gallery (fpforensics/weights/builtin-gallery.db) in one command.

    python scripts/build_builtin_gallery.py                      # --data ../shared/data, the shipped extractor
    python scripts/build_builtin_gallery.py --data DIR --out FILE --work full-gallery.db

Every image of the 24 generator folders of DIR/generated and DIR/modern is embedded with the
shipped default extractor (``fpforensics/weights/extractor.pt``; 3x3 window) and enrolled; the
gallery written to --out keeps only the fingerprints, the counts, each image's path (relative to
DIR) and sha256, the open-set threshold calibrated on all the images, and each model's provenance.

The provenance below is transcribed from DIR/SOURCES.md (source description, repository and
commit, images used of those available, date range where SOURCES.md states one, format,
licence). ``family`` groups generators that share a decoder or a base model, as SOURCES.md says:
GLID-3-XL is a fine-tune of the CompVis LDM (likely the same autoencoder); the two StyleGAN2 FFHQ
folders may be one network rendered by two codebases; the two PixArt-alpha folders are two
checkpoints of one model; the seven CelebA64 GANs share one DCGAN-like architecture and training
set and differ only in the loss. The build refuses a folder whose image count differs from the
one stated here, and records the sha256 of SOURCES.md and of the extractor file in the gallery.

--work keeps the full gallery (with image embeddings): a rerun reuses the models already in it,
so an interrupted build resumes. After swapping the shipped extractor, delete the --work file
(the build refuses one made by another extractor) and run the same command.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fpforensics.gallery.builtin import Source, build, builtin_gallery_path

DCSAN = {"repository": "dcsan/imagen", "commit": "c6f37ebed13ee57a51055235c70621c6ae80521f",
         "path": "output/renders/<prompt-slug>/<prefix>-<n>.png|jpg"}
DCSAN_NOTE = ("made between June and July 2022 through Replicate, Discord bots and web UIs from the same ~25 text "
              "prompts; de-duplicated by MD5; copied files spread evenly over the list sorted by path")
T2I_CMP = {"repository": "Zeqiang-Lai/t2i-cmp (copy of the Hugging Face Space aaronb/t2i-cmp)",
           "commit": "021120f67da47b05707ada4f4f1cbe73e81f672f"}
T2I_NOTE = ("diffusers AutoPipelineForText2Image (fp16, default steps, guidance and resolution), one image per "
            "ViLG-300 prompt, saved by PIL as JPEG (default quality 75); prompt indices 0 19 38 56 75 94 112 131 150 "
            "169 188 206 225 244 262 281")
CELEBA = {"repository": "znxlwm/pytorch-generative-model-collections",
          "commit": "0d183bb5ea2fbe069e1c6806c4a9a1fd8e81656f", "path": "assets/celebA_results/<GAN>_epoch025.png"}
FAMILY_NOTES = {
    "CompVis-LDM": "GLID-3-XL is a fine-tune of the CompVis latent diffusion model, so it likely shares LDM's autoencoder",
    "StyleGAN2-FFHQ1024": "both render an FFHQ 1024 StyleGAN2 network; they may be the same network (config-f) "
                          "rendered by two codebases",
    "PixArt-alpha": "two checkpoints of one model (same architecture, T5 encoder and SD VAE); different resolution",
    "CelebA64-DCGAN": "all seven share one DCGAN-like architecture and the same CelebA training data; they differ "
                      "only in the loss (separately trained weights)",
}


def _dcsan(folder: str, prefix: str, source: str, copied: int, available: str, fmt: str, resolution: str,
           dates: str = "2022-06/2022-07", family: str | None = None) -> Source:
    return _source(folder, "generated", source, copied, available, {**DCSAN, "prefix": prefix}, dates, fmt,
                   resolution, "none stated", DCSAN_NOTE, family)


def _t2i(folder: str, model_id: str, source: str, resolution: str, family: str | None = None) -> Source:
    return _source(folder, "modern", source, 16, "16 of 300", {**T2I_CMP, "path": f"saved/{model_id}/<i>.jpg"},
                   "by 2024-01-10 (the commit that added the files)", "JPEG", resolution, "none stated", T2I_NOTE,
                   family)


def _celeba(gan: str) -> Source:
    return _source(f"CelebA64_{gan}", "generated", f"{gan} trained on CelebA at 64x64 (pytorch-generative-model-"
                   "collections), epoch-25 sample grid", 64, "64 tiles of one 8x8 grid",
                   {**CELEBA, "path": CELEBA["path"].replace("<GAN>", gan)}, None, "PNG", "64x64", "none stated",
                   "each 512x512 grid cut losslessly into its 64 tiles of 64x64", "CelebA64-DCGAN")


def _source(folder: str, part: str, source: str, copied: int, available: str, origin: dict, dates: str | None,
            fmt: str, resolution: str, license_: str, notes: str, family: str | None) -> Source:
    meta = {"source": source, "set": part, "images": copied, "available": available, "origin": origin,
            "format": fmt, "resolution": resolution, "license": license_, "notes": notes}
    if dates:
        meta["date_range"] = dates
    if family:
        meta.update(family=family, family_note=FAMILY_NOTES[family])
    return Source(folder, f"{part}/{folder}", meta, copied)


SOURCES = [
    _dcsan("DALLE-mini", "dmin", "DALL-E mini (borisdayma/dalle-mini; VQGAN decoder)", 80, "80 of 369 unique", "PNG",
           "256x256"),
    _dcsan("LatentDiffusion-LDM-txt2img", "ldif", "CompVis latent diffusion text-to-image (Replicate "
           "nicholascelestin/latent-diffusion)", 80, "80 of 369 unique", "PNG", "256x256", family="CompVis-LDM"),
    _dcsan("GLID-3-XL", "glid3", "GLID-3-XL (Replicate afiaka87/glid-3-xl; a fine-tune of the CompVis LDM, so it "
           "likely shares LDM's autoencoder)", 80, "80 of 243 unique", "PNG", "256x256", family="CompVis-LDM"),
    _dcsan("DiscoDiffusion", "disco", "Disco Diffusion (nightmareai/disco-diffusion, 256x256_diffusion_uncond ADM "
           "plus CLIP guidance)", 60, "60 of 86 unique (only 256x256 kept)", "PNG", "256x256"),
    _dcsan("MajestyDiffusion", "mdif", "Majesty Diffusion (nightmareai/majesty-diffusion; latent diffusion plus CLIP "
           "guidance)", 21, "21 of 21 unique", "PNG", "384x384"),
    _dcsan("Midjourney_Jul2022", "midj", "Midjourney, July 2022 (probably v2/v3); single upscaled images, not 2x2 "
           "grids", 20, "20 of 185 unique (only 1024x1024 kept)", "PNG", "1024x1024", dates="2022-07"),
    _dcsan("StableDiffusion_DiscordBeta_Jul2022", "stab", "Stable Diffusion Discord beta of July 2022 (\"stabAI-fast\"),"
           " before the public v1.4 release", 24, "24 of 101 unique", "PNG", "512x512", dates="2022-07"),
    _dcsan("Simulacra_bot_Jul2022", "simu", "\"simulacra\": probably the Simulacra Discord bot; the exact model is "
           "uncertain (the config points to pixray-vqgan at 256 px, the files are 512 px): one unknown but "
           "consistent source", 24, "24 of 104 unique", "PNG", "512x512", dates="2022-07"),
    _dcsan("DALLE2", "dal2", "OpenAI DALL-E 2 (coloured-bar watermark in the bottom-right corner)", 25,
           "25 of 73 unique (JPEG files only)", "JPEG", "1024x1024"),
    _source("StyleGAN2-ADA_FFHQ1024_seeds", "generated", "StyleGAN2(-ADA) FFHQ 1024 network, generate.py seeds 0-19 "
            "(NVlabs/stylegan2-ada-pytorch code; the exact pkl is not stated)", 20, "20 of 31 (seeds 0-30)",
            {"repository": "ZhuoxuanZhangHarry/AgeGAN-FaceEvolution (an unchanged copy of NVlabs/stylegan2-ada-pytorch)",
             "commit": "7f2276f4c9b59acbda4463888e48c36c68c6c1c2", "path": "out/seed0000.png ... out/seed0019.png"},
            None, "PNG", "1024x1024", "NVIDIA Source Code License (code); NVIDIA's FFHQ networks are CC BY-NC 4.0",
            "may be the same network as StyleGAN2_FFHQ1024_configf_rosinality", "StyleGAN2-FFHQ1024"),
    _source("StyleGAN2_FFHQ1024_configf_rosinality", "generated", "official StyleGAN2 FFHQ config-f "
            "(stylegan2-ffhq-config-f.pt, converted to PyTorch) through rosinality-style generate.py", 20, "20",
            {"repository": "jjxxmiin/stylegan-collection-pytorch", "commit": "fb6947da348aca72940381a34b166a9964125ef0",
             "path": "sample/000000.png ... sample/000019.png"},
            None, "PNG", "1024x1024", "MIT (code)", "may be the same network as StyleGAN2-ADA_FFHQ1024_seeds",
            "StyleGAN2-FFHQ1024"),
    *[_celeba(gan) for gan in ("BEGAN", "DRAGAN", "EBGAN", "GAN", "LSGAN", "WGAN", "WGAN_GP")],
    _t2i("SD2.1", "stabilityai_stable-diffusion-2-1", "Stable Diffusion 2.1 (768-v; stabilityai/stable-diffusion-2-1)",
         "768x768"),
    _t2i("PixArt-alpha-XL-2-512", "PixArt-alpha_PixArt-XL-2-512x512", "PixArt-alpha XL-2 512x512 "
         "(PixArt-alpha/PixArt-XL-2-512x512)", "512x512", family="PixArt-alpha"),
    _t2i("PixArt-alpha-XL-2-1024-MS", "PixArt-alpha_PixArt-XL-2-1024-MS", "PixArt-alpha XL-2 1024-MS "
         "(PixArt-alpha/PixArt-XL-2-1024-MS)", "1024x1024", family="PixArt-alpha"),
    _t2i("Kandinsky3", "kandinsky-community_kandinsky-3", "Kandinsky 3 (kandinsky-community/kandinsky-3, fp16 "
         "variant)", "1024x1024"),
    _t2i("Playground-v2-1024px-aesthetic", "playgroundai_playground-v2-1024px-aesthetic", "Playground v2 1024px "
         "aesthetic (playgroundai/playground-v2-1024px-aesthetic; v2, not v2.5)", "1024x1024"),
    _source("Qwen-Image", "modern", "Qwen-Image (Alibaba, 2025) as served by the WaveSpeed AI hosted API "
            "(1024x1024, seed 42; its inference settings are not stated)", 10, "10 of 10",
            {"repository": "jyoung105/yetter", "commit": "131d503f7b35d76ea6f44d9ebb4983792b3eb207",
             "path": "control_group/wavespeed/qwen-image/results/prompt_NN_image_1.png",
             "added_in": "70b05f701eee018dec73bcb1ab95c88c9416721b"},
            "by 2025-08-19 (the commit that added the files)", "PNG", "1024x1024", "none stated",
            "10 prompts of the repo's example_inputs/prompts.txt", None),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data"),
                    help="folder with generated/, modern/ and SOURCES.md (default: ../shared/data)")
    ap.add_argument("--out", type=Path, default=builtin_gallery_path(), help="default: the package's built-in gallery")
    ap.add_argument("--extractor", "-e", default="default", help="default: the shipped extractor")
    ap.add_argument("--work", type=Path, help="keep the full gallery (with embeddings) here; a rerun resumes from it")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    from fpforensics import __version__
    from fpforensics.errors import FptError
    from fpforensics.extractor import DEFAULT_EXTRACTOR_PATH
    from fpforensics.images.folders import file_sha256

    sources_md = args.data / "SOURCES.md"
    try:
        text = sources_md.read_text(encoding="utf-8")
    except OSError as exc:
        sys.exit(f"error: {sources_md}: cannot read ({exc.strerror or exc}); is --data the shared data folder?")
    missing = [s.name for s in SOURCES if s.name not in text  # the CelebA GANs are described together
               and not (s.name.startswith("CelebA64_") and "CelebA64_<GAN>" in text and s.name[9:] in text)]
    if missing:
        sys.exit(f"error: {sources_md} does not describe {', '.join(missing)}: update the provenance in {__file__}")
    ext_file = Path(args.extractor) if args.extractor not in ("default",) else DEFAULT_EXTRACTOR_PATH
    info = {
        "kind": "builtin reference gallery",
        "description": f"{len(SOURCES)} public generators (../shared/data generated/ and modern/), every image of each "
                       "folder; provenance from SOURCES.md",
        "command": "python scripts/build_builtin_gallery.py" + ("" if args.extractor == "default"
                                                                 else f" --extractor {args.extractor}"),
        "extractor_file": ext_file.name, "extractor_sha256": file_sha256(ext_file) if ext_file.is_file() else None,
        "sources_sha256": file_sha256(sources_md), "paths": "relative to the data folder that holds SOURCES.md",
        "tool_version": __version__,
    }
    start = time.time()

    def on_model(name: str, n: int, reused: bool) -> None:
        print(f"{name}: {n} images{' (reused from --work)' if reused else ''}  [{time.time() - start:.0f} s]",
              file=sys.stderr, flush=True)

    try:
        g = build(SOURCES, args.data, args.out, args.extractor, args.work, info, args.device, on_model,
                  batch_size=args.batch_size)
    except FptError as exc:
        sys.exit(f"error: {exc}")
    print(f"wrote {args.out}: {len(g)} models, {sum(m.n_images for m in g.models())} images, extractor {g.extractor}, "
          f"threshold {g.threshold:.4f} ({g.calibration.source}); {args.out.stat().st_size / 1024:.0f} KiB, "
          f"{time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
