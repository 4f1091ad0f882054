// The detail view: the entry drawn over its photo on a canvas (opacity, outlines, one class
// at a time), the hovered segment named, keyboard navigation, and a reload when it changes.
"use strict";
(function () {
  const page = document.getElementById("detail");
  const go = (id) => { const a = document.getElementById(id); if (a) window.location.href = a.href; };
  const dataNode = document.getElementById("entry-data");
  let toggleOutlines = () => {}, nextClass = () => {};

  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
    switch (e.key) {
      case "j": case "ArrowRight": case "ArrowDown": go("next-task"); break;
      case "k": case "ArrowLeft": case "ArrowUp": go("prev-task"); break;
      case "u": case "Escape": window.location.href = page.dataset.grid; break;
      case "l": toggleOutlines(); break;
      case "c": nextClass(); break;
      default: return;
    }
    e.preventDefault();
  });

  // live: reload when this task changes
  let seq = Number(page.dataset.seq);
  async function poll() {
    try {
      const r = await fetch(page.dataset.changes + "?since=" + seq, { credentials: "same-origin", cache: "no-store" });
      const body = await r.json();
      if (body.indexing) throw new Error("indexing"); // rebuilt meanwhile: the reload follows
      const mine = body.cards.some((c) => String(c.task_id) === page.dataset.task) ||
        body.gone.map(String).includes(page.dataset.task);
      if (mine || body.reload || body.many) { window.location.reload(); return; }
      seq = body.seq;
    } catch (err) { /* keep polling */ }
    setTimeout(poll, 1000);
  }
  setTimeout(poll, 1000);

  if (!dataNode) return;
  const data = JSON.parse(dataNode.textContent);
  const segments = new Map(data.segments.map((s) => [s.id, s]));
  const rgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  const photoCanvas = document.getElementById("photo");
  const overlay = document.getElementById("overlay");
  const opacity = document.getElementById("opacity");
  const outlines = document.getElementById("outlines");
  const only = document.getElementById("only");
  const hover = document.getElementById("hover");
  let ids = null, width = 0, height = 0;

  function load(src) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error("cannot load " + src));
      img.src = src;
    });
  }

  function draw() {
    if (!ids) return;
    const alpha = Math.round(255 * Number(opacity.value) / 100);
    const shown = only.value === "" ? null : Number(only.value);
    const out = new ImageData(width, height);
    const px = out.data;
    const colours = new Map();
    segments.forEach((s, id) => {
      const hidden = s.class === data.background || (shown !== null && s.class !== shown);
      colours.set(id, hidden ? null : rgb(data.palette[s.class % data.palette.length]));
    });
    const edges = outlines.checked;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = y * width + x, id = ids[i], c = colours.get(id);
        let edge = false;
        if (edges) {
          edge = (x + 1 < width && ids[i + 1] !== id) || (y + 1 < height && ids[i + width] !== id) ||
                 (x > 0 && ids[i - 1] !== id) || (y > 0 && ids[i - width] !== id);
          if (edge && shown !== null) {
            edge = c != null || (x + 1 < width && colours.get(ids[i + 1]) != null) ||
                   (y + 1 < height && colours.get(ids[i + width]) != null);
          }
        }
        const o = i * 4;
        if (edge) { px[o] = 255; px[o + 1] = 255; px[o + 2] = 255; px[o + 3] = 255; }
        else if (c) { px[o] = c[0]; px[o + 1] = c[1]; px[o + 2] = c[2]; px[o + 3] = alpha; }
      }
    }
    overlay.getContext("2d").putImageData(out, 0, 0);
  }

  Promise.all([load(data.photo), load(data.ids)]).then(([photo, idImg]) => {
    width = idImg.naturalWidth; height = idImg.naturalHeight;
    for (const c of [photoCanvas, overlay]) { c.width = width; c.height = height; }
    photoCanvas.getContext("2d").drawImage(photo, 0, 0, width, height);
    const scratch = document.createElement("canvas");
    scratch.width = width; scratch.height = height;
    const sctx = scratch.getContext("2d", { willReadFrequently: true });
    sctx.drawImage(idImg, 0, 0);
    const raw = sctx.getImageData(0, 0, width, height).data;
    ids = new Uint32Array(width * height);
    for (let i = 0; i < ids.length; i++) ids[i] = (raw[4 * i] << 16) | (raw[4 * i + 1] << 8) | raw[4 * i + 2];
    draw();
    page.dataset.ready = "1";
  }).catch((err) => { hover.textContent = String(err); });

  opacity.addEventListener("input", draw);
  outlines.addEventListener("change", draw);
  only.addEventListener("change", draw);
  toggleOutlines = () => { outlines.checked = !outlines.checked; draw(); };
  nextClass = () => { only.selectedIndex = (only.selectedIndex + 1) % only.options.length; draw(); };

  overlay.addEventListener("mousemove", (e) => {
    if (!ids) return;
    const box = overlay.getBoundingClientRect();
    const x = Math.floor((e.clientX - box.left) * width / box.width);
    const y = Math.floor((e.clientY - box.top) * height / box.height);
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    const s = segments.get(ids[y * width + x]);
    hover.textContent = s
      ? "instance " + s.id + " · " + (data.labels[s.class] || "class " + s.class) + " · " + s.area.toLocaleString() + " px"
      : "no segment";
  });
})();
