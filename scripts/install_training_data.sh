#!/usr/bin/env bash
# Installs what synthetic training data is made of (root; apt-get): Debian's font packages, and the packages
# of English prose that text lines are cut from and the character LM is built from (crnn_fast.data.corpus:
# fortunes, dict-gcide, dict-devil, dict-jargon), with the word list (wamerican).
#
# The list holds Debian's Latin-script font packages: text faces, monospace, handwriting, display and
# pixel fonts. crnn_fast.data.fonts probes every installed font file and keeps only those that draw all
# 95 printable ASCII characters, so a package here that lacks some glyphs costs disk space, nothing else.
# Never listed, and never used by crnn_fast.data.fonts even where installed: the families kept for an
# outside evaluation (fonts-urw-base35, fonts-linuxlibertine, fonts-ebgaramond, fonts-cantarell, fonts-go,
# fonts-crosextra-caladea, fonts-crosextra-carlito, fonts-lato, fonts-roboto*, fonts-open-sans, fonts-texgyre,
# fonts-inconsolata), and GNU FreeFont (drawn from the URW base 35 outlines).
# CI installs only the few fonts the tests need (.ci/run); this script is for training and evaluation runs.
set -euo pipefail

packages=(
  fonts-3270 fonts-adf-accanthis fonts-adf-baskervald fonts-adf-berenis fonts-adf-gillius fonts-adf-ikarius
  fonts-adf-irianis fonts-adf-libris fonts-adf-mekanus fonts-adf-oldania fonts-adf-romande fonts-adf-solothurn
  fonts-adf-switzera fonts-adf-tribun fonts-adf-universalis fonts-adf-verana fonts-agave
  fonts-allerta fonts-anonymous-pro fonts-apropal fonts-arkpandora fonts-atarismall fonts-averia-gwf
  fonts-averia-sans-gwf fonts-averia-serif-gwf fonts-b612 fonts-bajaderka fonts-bebas-neue fonts-beteckna
  fonts-blankenburg fonts-breip fonts-cabin fonts-cabinsketch fonts-campania fonts-cardo fonts-century-catalogue
  fonts-cherrybomb fonts-clear-sans fonts-cmu fonts-comfortaa fonts-comic-neue fonts-compagnon
  fonts-courier-prime fonts-creep2 fonts-croscore fonts-dancingscript fonts-dclfonts fonts-dejavu-core
  fonts-dejavu-extra fonts-dkg-handwriting fonts-dosis fonts-dustin fonts-ecolier-court
  fonts-ecolier-lignes-court fonts-elstob fonts-engadget fonts-essays1743 fonts-eurofurence fonts-f500
  fonts-fantasque-sans fonts-fanwood fonts-femkeklaver fonts-ferrite-core fonts-firacode fonts-gamaliel
  fonts-georgewilliams fonts-gfs-artemisia fonts-gfs-baskerville fonts-gfs-bodoni-classic fonts-gfs-didot
  fonts-gfs-neohellenic fonts-gfs-porson fonts-glasstty fonts-gnutypewriter fonts-gotico-antiqua
  fonts-goudybookletter fonts-hack fonts-havana fonts-hermit fonts-humor-sans fonts-inter fonts-isabella
  fonts-jetbrains-mono fonts-joscelyn fonts-junction fonts-junicode fonts-jura fonts-karla fonts-karmilla
  fonts-kaushanscript fonts-klaudia-berenika fonts-kristi fonts-le-murmure fonts-league-mono fonts-league-spartan
  fonts-leckerli-one fonts-lemonada fonts-levien-museum fonts-levien-typoscript fonts-liberation
  fonts-liberation2 fonts-lindenhill fonts-linex fonts-lmodern fonts-lobster fonts-lobstertwo fonts-manrope
  fonts-millimetre fonts-monofur fonts-monoid fonts-mononoki fonts-mplus fonts-national-park fonts-noto-core
  fonts-noto-mono fonts-ocr-a fonts-ocr-b fonts-oflb-euterpe fonts-okolaks fonts-oldstandard fonts-opendin
  fonts-opendyslexic fonts-osifont fonts-paratype fonts-play fonts-prociono fonts-proggy fonts-quattrocento
  fonts-quicksand fonts-radisnoir fonts-rampart fonts-ricty-diminished fonts-roadgeek fonts-rocknroll
  fonts-routed-gothic fonts-rufscript fonts-sil-andika fonts-sil-charis fonts-sil-doulos fonts-sil-gentiumplus
  fonts-sil-gentium-basic fonts-sixtyfour fonts-solide-mirage fonts-sora fonts-spleen fonts-staypuft
  fonts-stick fonts-stix fonts-summersby fonts-tiresias fonts-tomsontalks fonts-train fonts-tuffy
  fonts-ubuntu-title fonts-uralic fonts-vollkorn fonts-yanone-kaffeesatz fonts-yrsa-rasa
  fonts-tlwg-garuda-ttf fonts-tlwg-kinnari-ttf fonts-tlwg-laksaman-ttf fonts-tlwg-loma-ttf fonts-tlwg-mono-ttf
  fonts-tlwg-norasi-ttf fonts-tlwg-purisa-ttf fonts-tlwg-sawasdee-ttf fonts-tlwg-typewriter-ttf
  fonts-tlwg-typist-ttf fonts-tlwg-typo-ttf fonts-tlwg-umpush-ttf fonts-tlwg-waree-ttf
  fortunes fortunes-min dict-gcide dict-devil dict-jargon wamerican
)

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# One transaction when every name resolves; otherwise package by package, so that one name missing from
# this Debian release does not stop the others.
if ! apt-get install -y -qq --no-install-recommends "${packages[@]}"; then
  for p in "${packages[@]}"; do
    apt-get install -y -qq --no-install-recommends "$p" || echo "install_training_data: skipped $p" >&2
  done
fi
