"""One corpus from several speaker-labelled folders: namespaced ids, a split per source, genders, symlinks."""

import os
import shutil

import pytest

from deepclust.corpora.sources import CorpusSource, prepare_sources, read_speaker_genders


@pytest.fixture()
def two_corpora(tmp_path, corpora_dir):
    """Small copies: 8 speechocean762 speakers (2 files each) and 8 LibriSpeech readers, with their tables."""
    ocean, libri = tmp_path / "speechocean762", tmp_path / "librispeech-speakers"
    source_ocean = corpora_dir / "speechocean762"
    speakers = sorted(p.name for p in source_ocean.iterdir() if p.is_dir())[:8]
    for speaker in speakers:
        (ocean / speaker).mkdir(parents=True)
        for flac in sorted((source_ocean / speaker).glob("*.flac"))[:2]:
            shutil.copy(flac, ocean / speaker / flac.name)
    shutil.copy(source_ocean / "speakers.csv", ocean / "speakers.csv")
    source_libri = corpora_dir / "librispeech-speakers"
    for speaker in sorted(p.name for p in source_libri.iterdir() if p.is_dir())[:8]:
        shutil.copytree(source_libri / speaker, libri / speaker)
    shutil.copy(source_libri / "SPEAKERS.TXT", libri / "SPEAKERS.TXT")
    return ocean, libri


def test_speaker_ids_are_namespaced_and_every_source_keeps_test_speakers(two_corpora):
    ocean, libri = two_corpora
    manifest = prepare_sources([CorpusSource(str(ocean)), CorpusSource(str(libri))], test_fraction=0.25, seed=0)
    assert set(manifest["speaker"].str.split("/").str[0]) == {"speechocean762", "librispeech-speakers"}
    assert manifest["utterance_id"].is_unique
    for source in ("speechocean762", "librispeech-speakers"):
        rows = manifest[manifest["speaker"].str.startswith(source + "/")]
        assert set(rows["subset"]) == {"train", "test"}, source
        assert rows.groupby("speaker")["subset"].nunique().max() == 1  # speaker-disjoint
    assert len(manifest) == 8 * 2 + 8
    assert manifest["gender"].notna().all()  # both speaker tables were read


def test_same_speaker_number_in_two_corpora_stays_two_speakers(tmp_path, corpora_dir):
    source = corpora_dir / "librispeech-speakers" / "103"
    for name in ("a", "b"):
        shutil.copytree(source, tmp_path / name / "103")
        shutil.copytree(corpora_dir / "librispeech-speakers" / "1034", tmp_path / name / "1034")
    manifest = prepare_sources(
        [CorpusSource(str(tmp_path / "a"), "librispeech"), CorpusSource(str(tmp_path / "b"), "librispeech")]
    )
    assert sorted(manifest["speaker"].unique()) == ["a/103", "a/1034", "b/103", "b/1034"]


def test_source_spec_parses_name_root_and_pattern():
    assert CorpusSource.parse("/data/x") == CorpusSource("/data/x", "auto", None)
    spec = CorpusSource.parse("ls:/data/LibriSpeech=librispeech")
    assert (spec.name, spec.root, spec.pattern, spec.source_name) == ("ls", "/data/LibriSpeech", "librispeech", "ls")
    assert CorpusSource("/c/speechocean762").resolved_pattern() == "speechocean762"


def test_genders_from_speakers_csv_keep_leading_zeros(corpora_dir):
    genders = read_speaker_genders(str(corpora_dir / "speechocean762"))
    assert genders["0001"] == "m" and len(genders) == 250


def test_two_sources_with_one_name_are_refused(two_corpora):
    ocean, _ = two_corpora
    with pytest.raises(ValueError, match="share a name"):
        prepare_sources([CorpusSource(str(ocean)), CorpusSource(str(ocean))])


def test_symlinked_speaker_folder_is_followed(tmp_path, corpora_dir):
    root = tmp_path / "corpus"
    root.mkdir()
    shutil.copytree(corpora_dir / "librispeech-speakers" / "103", root / "103")
    os.symlink(corpora_dir / "librispeech-speakers" / "1034", root / "1034")
    manifest = prepare_sources([CorpusSource(str(root), "librispeech")], test_fraction=0.5)
    assert sorted(manifest["speaker"].unique()) == ["corpus/103", "corpus/1034"]


def test_corpus_stage_combines_sources_and_its_key_follows_their_content(two_corpora, tmp_path):
    from deepclust import storage
    from deepclust.pipeline.driver import run_stage
    from deepclust.stages.corpus import CorpusConfig, plan_corpus

    ocean, libri = two_corpora
    config = CorpusConfig(name="sources", sources=[str(ocean), f"ls:{libri}=librispeech"])
    url = run_stage(plan_corpus(str(tmp_path / "run"), config))
    manifest = storage.read_parquet(url)
    assert {s.split("/")[0] for s in manifest["speaker"]} == {"speechocean762", "ls"}
    extra = ocean / "0001"
    extra.mkdir(exist_ok=True)
    shutil.copy(next(ocean.glob("*/*.flac")), extra / "000019999.flac")
    assert plan_corpus(str(tmp_path / "run"), config).stage.key != url.rstrip("/").split("/")[-2]


def test_speech_commands_corpora_are_split_per_speaker_folder(corpora_dir):
    sources = [
        CorpusSource(str(corpora_dir / "speech-commands")),
        CorpusSource(str(corpora_dir / "arabic-speech-commands")),
    ]
    manifest = prepare_sources(sources, test_fraction=0.25, seed=0)
    by_source = manifest.groupby(manifest["speaker"].str.split("/").str[0])["speaker"].nunique()
    assert by_source.to_dict() == {"arabic-speech-commands": 30, "speech-commands": 254}
    first = manifest[manifest["speaker"].str.startswith("speech-commands/")].iloc[0]
    assert first["utterance_id"].split("/", 1)[1].startswith(first["speaker"].split("/", 1)[1])
    assert set(manifest["subset"]) == {"train", "test"}
