/* Gaitway analysis viewer: the video with its 2D skeleton, the 3D skeleton, angle curves, gait events,
 * steps and summary, all on one clock (the analysis frame index).
 *
 * Data: #gaitway-header (JSON) describes #gaitway-blob (base64 of zlib-compressed bytes: a JSON document,
 * then channel-major quantised arrays); see services/viewer/data.py. Nothing is fetched but the video.
 *
 * Testability: <body data-viewer-state="loading|ready|error" data-frames="N" data-frame="i">; the current
 * angles are in #angle-readout; window.gaitwayViewer exposes seek(i), play(), pause(), renderNow().
 */
(() => {
  "use strict";

  const COLOUR = { left: "#ff8c00", right: "#00a0ff", mid: "#e6e6e6" };
  const SIDES = ["left", "right"];
  const MISSING = -32768;
  const FILLED = 11; // conf2d value of a keypoint that was filled in
  const body = document.body;
  const $ = (id) => document.getElementById(id);
  const dpr = () => Math.min(window.devicePixelRatio || 1, 2);
  const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));
  const esc = (s) =>
    String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const sideOf = (name) => (name.startsWith("left") ? "left" : name.startsWith("right") ? "right" : "mid");

  // ------------------------------------------------------------------------------------------------
  // Data
  // ------------------------------------------------------------------------------------------------

  async function inflate(b64) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer();
  }

  /** One array of the blob, decoded (see services/viewer/data.py): int16 -> Float32Array (NaN = missing),
   * int32 -> Float64Array, uint8 -> Uint8Array; channel-major, value of channel c at frame i at [c * n + i]. */
  function decodeArray(buf, meta, n) {
    const { dtype, offset } = meta;
    if (dtype === "uint8") return new Uint8Array(buf, offset, meta.bytes);
    if (dtype === "int32") {
      const raw = new Int32Array(buf, offset, meta.bytes / 4);
      const out = new Float64Array(raw.length);
      let acc = 0;
      for (let i = 0; i < raw.length; i++) {
        acc = meta.order ? acc + raw[i] : raw[i];
        out[i] = acc / meta.scale;
      }
      return out;
    }
    // int16: zigzag-coded differences of order 0-2, as two byte planes
    const count = meta.bytes / 2;
    const lo = new Uint8Array(buf, offset, count);
    const hi = new Uint8Array(buf, offset + count, count);
    const out = new Float32Array(count);
    const order = meta.order || 0;
    for (let c = 0; c < meta.channels; c++) {
      const inv = 1 / (meta.scales ? meta.scales[c] : meta.scale);
      const base = c * n;
      let a1 = 0;
      let a2 = 0;
      for (let i = 0; i < n; i++) {
        const z = lo[base + i] | (hi[base + i] << 8);
        let q = (((z >>> 1) ^ -(z & 1)) << 16) >> 16;
        if (order >= 1) q = a1 = ((a1 + q) << 16) >> 16;
        if (order >= 2) q = a2 = ((a2 + q) << 16) >> 16;
        out[base + i] = q === MISSING ? NaN : q * inv;
      }
    }
    return out;
  }

  async function loadData() {
    const header = JSON.parse($("gaitway-header").textContent);
    const buf = await inflate($("gaitway-blob").textContent.trim());
    const doc = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 0, header.document_bytes)));
    const n = header.frames;
    const a = header.arrays;
    const D = {
      n,
      doc,
      header,
      metrics: doc.metrics,
      t: decodeArray(buf, a.t, n),
      kp2d: decodeArray(buf, a.kp2d, n),
      conf2d: decodeArray(buf, a.conf2d, n),
      kp3d: decodeArray(buf, a.kp3d, n),
      flags: decodeArray(buf, a.frameflags, n),
      series: a.series ? decodeArray(buf, a.series, n) : null,
      k2: doc.skeleton2d.joints.length,
      k3: doc.skeleton3d.joints.length,
    };
    D.x2 = (i, j) => D.kp2d[2 * j * n + i];
    D.y2 = (i, j) => D.kp2d[(2 * j + 1) * n + i];
    D.p3 = (i, j, c) => D.kp3d[(3 * j + c) * n + i];
    D.duration = n > 1 ? D.t[n - 1] - D.t[0] : 0;
    const video = doc.video || {};
    D.fpsNominal = video.fps_nominal || video.fps || 30;
    // frames per real second, from the analysis' own clock (a corrected time base included)
    D.fpsReal = n > 1 && D.duration > 0 ? (n - 1) / D.duration : video.fps || D.fpsNominal;
    D.series_rows = {};
    if (D.metrics && D.series) D.metrics.series.forEach((s, r) => (D.series_rows[s.key] = r));
    D.value = (key, i) => {
      const r = D.series_rows[key];
      return r === undefined ? NaN : D.series[r * n + i];
    };
    return D;
  }

  /** The largest frame whose time is <= t (binary search on the monotonic frame times). */
  function frameAtTime(D, t) {
    let lo = 0;
    let hi = D.n - 1;
    if (t <= D.t[0]) return 0;
    if (t >= D.t[hi]) return hi;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (D.t[mid] <= t) lo = mid;
      else hi = mid;
    }
    return lo;
  }

  // ------------------------------------------------------------------------------------------------
  // Formatting and labels
  // ------------------------------------------------------------------------------------------------

  const SERIES_GROUPS = {
    knee_flexion: ["Knee flexion", "0° = straight leg"],
    hip_flexion: ["Hip flexion", "+ thigh ahead of the trunk line, − extension"],
    ankle_dorsiflexion: ["Ankle dorsiflexion", "+ = foot pulled up towards the shin"],
    tibia_angle: ["Tibia angle", "shank from vertical; + = ankle ahead of the knee"],
    thigh_angle: ["Thigh angle", "thigh from vertical; + = knee ahead of the hip"],
    foot_angle: ["Foot angle", "foot from horizontal; + = toes up"],
    trunk_lean: ["Trunk lean", "+ = leaning forward"],
    pelvic_drop: ["Pelvic drop", "+ = left hip lower than the right"],
    elbow_flexion: ["Elbow flexion", "0° = straight arm"],
    pelvis_height: ["Pelvis height", "vertical bounce, median = 0"],
  };
  const DEFAULT_CHARTS = ["knee_flexion", "hip_flexion", "ankle_dorsiflexion", "trunk_lean"];
  const FLAG_LABELS = {
    swap_repaired: "left/right swap repaired",
    low_confidence: "low keypoint confidence",
    out_of_plane: "runner not side-on",
    implausible: "implausible value",
  };
  const UNIT_SHORT = { deg: "°", "% leg length": "% leg", "steps/min": " spm", fraction: "", "%": "%" };

  function unitShort(u) {
    return u in UNIT_SHORT ? UNIT_SHORT[u] : u ? ` ${u}` : "";
  }
  function digitsFor(unit) {
    if (unit === "s") return 3;
    if (unit === "steps/min") return 0;
    if (unit === "fraction") return 2;
    return 1;
  }
  function fmt(v, unit, withUnit = true) {
    if (v === null || v === undefined || !Number.isFinite(v)) return "–";
    const s = v.toFixed(digitsFor(unit));
    return withUnit ? s + unitShort(unit) : s;
  }
  function fmtTime(t) {
    return `${t.toFixed(3)} s`;
  }
  function flagLabel(f) {
    return FLAG_LABELS[f] || f.replace(/_/g, " ");
  }

  /** Group the angle series by what they measure: {key, title, hint, unit, source, members: {left|right|mid: key}}. */
  function seriesGroups(D) {
    if (!D.metrics || !D.series) return [];
    const groups = new Map();
    for (const s of D.metrics.series) {
      let base = s.key.replace(/_(deg|cm|pct_leg)$/, "");
      let side = "mid";
      for (const sd of SIDES) {
        if (base.startsWith(sd + "_")) {
          side = sd;
          base = base.slice(sd.length + 1);
        }
      }
      const [title, hint] = SERIES_GROUPS[base] || [base.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase()), ""];
      if (!groups.has(base)) groups.set(base, { key: base, title, hint, unit: s.unit, sources: new Set(), members: {} });
      const g = groups.get(base);
      g.members[side] = s.key;
      if (s.source) g.sources.add(s.source);
    }
    const order = Object.keys(SERIES_GROUPS);
    const out = [...groups.values()];
    for (const g of out) {
      g.measured = Object.values(g.members).some((key) => {
        const r = D.series_rows[key];
        for (let i = 0; i < D.n; i++) if (Number.isFinite(D.series[r * D.n + i])) return true;
        return false;
      });
      const labels = D.doc.source_labels || {};
      g.sourceLabel = [...g.sources].map((s) => labels[s] || s).join(", ");
    }
    const rank = (g) => (order.includes(g.key) ? order.indexOf(g.key) : order.length);
    out.sort((a, b) => rank(a) - rank(b));
    return out;
  }

  // ------------------------------------------------------------------------------------------------
  // 2D: the video (or a plain canvas of the video's size) with the skeleton drawn over it
  // ------------------------------------------------------------------------------------------------

  class Overlay {
    constructor(D, view, canvas) {
      this.D = D;
      this.view = view;
      this.canvas = canvas;
      this.ctx = canvas.getContext("2d");
      const v = D.doc.video || {};
      this.W = v.width || 1;
      this.H = v.height || 1;
      this.plain = true; // no video picture under the skeleton (yet)
      const joints = D.doc.skeleton2d.joints;
      this.jointSide = joints.map(sideOf);
      this.edges = D.doc.skeleton2d.edges;
      new ResizeObserver(() => this.resize()).observe(view);
      this.resize();
    }
    resize() {
      const r = this.view.getBoundingClientRect();
      const k = dpr();
      this.canvas.width = Math.max(1, Math.round(r.width * k));
      this.canvas.height = Math.max(1, Math.round(r.height * k));
      if (this.frame !== undefined) this.draw(this.frame);
    }
    /** The picture's rectangle inside the canvas (object-fit: contain). */
    box() {
      const cw = this.canvas.width;
      const ch = this.canvas.height;
      const s = Math.min(cw / this.W, ch / this.H);
      const w = this.W * s;
      const h = this.H * s;
      return { x: (cw - w) / 2, y: (ch - h) / 2, s };
    }
    draw(i) {
      this.frame = i;
      const { D, ctx } = this;
      const { x: ox, y: oy, s } = this.box();
      ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
      if (this.plain) {
        ctx.fillStyle = "#1d232b";
        ctx.fillRect(ox, oy, this.W * s, this.H * s);
        ctx.strokeStyle = "#39424e";
        ctx.lineWidth = 1;
        ctx.strokeRect(ox + 0.5, oy + 0.5, this.W * s - 1, this.H * s - 1);
      }
      const k = dpr();
      const scale = Math.max(0.6, Math.min(this.W * s, this.H * s) / 480);
      const lw = 3 * k * scale;
      const pr = 4 * k * scale;
      const pt = (j) => [ox + D.x2(i, j) * s, oy + D.y2(i, j) * s];
      const ok = (j) => Number.isFinite(D.x2(i, j)) && Number.isFinite(D.y2(i, j));
      const conf = (j) => D.conf2d[j * D.n + i];
      const alpha = (j) => (conf(j) >= 3 ? 1 : 0.45); // score < 0.3: faint; FILLED (11) counts as sure
      ctx.lineCap = "round";
      // a dark outline under every bone keeps the colours readable on any background
      for (const pass of [0, 1]) {
        for (const [a, b] of this.edges) {
          if (!ok(a) || !ok(b)) continue;
          const side = this.jointSide[a] === "mid" ? this.jointSide[b] : this.jointSide[a];
          const [xa, ya] = pt(a);
          const [xb, yb] = pt(b);
          ctx.globalAlpha = Math.min(alpha(a), alpha(b));
          ctx.strokeStyle = pass === 0 ? "rgba(0,0,0,0.6)" : COLOUR[side];
          ctx.lineWidth = pass === 0 ? lw + 2.5 * k : lw;
          ctx.beginPath();
          ctx.moveTo(xa, ya);
          ctx.lineTo(xb, yb);
          ctx.stroke();
        }
      }
      for (let j = 0; j < D.k2; j++) {
        if (!ok(j)) continue;
        const [x, y] = pt(j);
        ctx.globalAlpha = alpha(j);
        ctx.beginPath();
        ctx.arc(x, y, pr, 0, 2 * Math.PI);
        if (conf(j) === FILLED) {
          // filled in (interpolated): drawn hollow
          ctx.lineWidth = 1.5 * k;
          ctx.strokeStyle = COLOUR[this.jointSide[j]];
          ctx.fillStyle = "rgba(0,0,0,0.5)";
          ctx.fill();
          ctx.stroke();
        } else {
          ctx.fillStyle = COLOUR[this.jointSide[j]];
          ctx.fill();
          ctx.lineWidth = 1 * k;
          ctx.strokeStyle = "rgba(0,0,0,0.7)";
          ctx.stroke();
        }
      }
      ctx.globalAlpha = 1;
    }
  }

  // ------------------------------------------------------------------------------------------------
  // 3D: three.js scene in a y-up frame (camera axes x right, y down, z away -> x, -y, -z)
  // ------------------------------------------------------------------------------------------------

  class Scene3D {
    constructor(D, view) {
      this.D = D;
      this.view = view;
      const T = window.THREE;
      this.renderer = new T.WebGLRenderer({ antialias: true });
      this.renderer.setPixelRatio(dpr());
      this.renderer.outputColorSpace = T.SRGBColorSpace;
      this.renderer.setClearColor(0x15191e, 1);
      view.prepend(this.renderer.domElement);
      this.renderer.domElement.setAttribute("aria-label", "3D skeleton");
      this.scene = new T.Scene();
      this.camera = new T.PerspectiveCamera(40, 1, 0.01, 1000);
      this.scene.add(new T.AmbientLight(0xffffff, 1.4));
      const sun = new T.DirectionalLight(0xffffff, 2.0);
      sun.position.set(1, 3, 2);
      this.scene.add(sun);
      this.measure();
      this.build(T);
      this.controls = new T.OrbitControls(this.camera, this.renderer.domElement);
      this.controls.addEventListener("change", () => this.render());
      this.controls.addEventListener("start", () => ($("three-hint").hidden = true));
      this.resize();
      this.setView("camera");
      new ResizeObserver(() => this.resize()).observe(view);
    }
    /** Scene position of joint j in frame i: (x, -y, -z) of the camera axes. */
    pos(i, j, v) {
      const D = this.D;
      return v.set(D.p3(i, j, 0), -D.p3(i, j, 1), -D.p3(i, j, 2));
    }
    /** Body size, ground level and facing direction over the whole clip. */
    measure() {
      const D = this.D;
      const T = window.THREE;
      const names = D.doc.skeleton3d.joints;
      const idx = (name) => names.indexOf(name);
      const feet = [idx("left_ankle"), idx("right_ankle")].filter((j) => j >= 0);
      const head = idx("head") >= 0 ? idx("head") : idx("neck_nose");
      const lhip = idx("left_hip");
      const rhip = idx("right_hip");
      const lows = [];
      const spans = [];
      const right = new T.Vector3();
      const v = new T.Vector3();
      const w = new T.Vector3();
      const step = Math.max(1, Math.floor(D.n / 2000));
      for (let i = 0; i < D.n; i += step) {
        let low = Infinity;
        for (const j of feet) {
          const y = -D.p3(i, j, 1);
          if (Number.isFinite(y)) low = Math.min(low, y);
        }
        if (!Number.isFinite(low)) continue;
        lows.push(low);
        if (head >= 0 && Number.isFinite(D.p3(i, head, 1))) spans.push(-D.p3(i, head, 1) - low);
        if (lhip >= 0 && rhip >= 0) {
          this.pos(i, rhip, v).sub(this.pos(i, lhip, w));
          if (Number.isFinite(v.x) && Number.isFinite(v.z)) right.add(v.setY(0));
        }
      }
      lows.sort((a, b) => a - b);
      spans.sort((a, b) => a - b);
      const median = (a, d) => (a.length ? a[a.length >> 1] : d);
      this.span = Math.max(0.2, median(spans, 1.7));
      const footLow = lows.length ? lows[Math.floor(lows.length * 0.02)] : -0.9;
      this.groundY = footLow - 0.05 * this.span; // the ankle joint sits above the sole
      if (right.lengthSq() < 1e-12) right.set(-1, 0, 0);
      this.right = right.normalize();
      this.up = new T.Vector3(0, 1, 0);
      this.forward = new T.Vector3().crossVectors(this.up, this.right).normalize();
      this.target = new T.Vector3(0, (this.groundY + this.groundY + this.span) / 2, 0);
    }
    build(T) {
      const D = this.D;
      const names = D.doc.skeleton3d.joints;
      const sides = names.map(sideOf);
      this.edges = D.doc.skeleton3d.edges;
      const colour = (side) => new T.Color(COLOUR[side]);
      const r = this.span;
      const boneGeo = new T.CylinderGeometry(1, 1, 1, 12);
      const jointGeo = new T.SphereGeometry(1, 16, 12);
      const mat = new T.MeshLambertMaterial({ color: 0xffffff });
      this.bones = new T.InstancedMesh(boneGeo, mat, this.edges.length);
      this.joints = new T.InstancedMesh(jointGeo, mat, names.length);
      this.bones.instanceMatrix.setUsage(T.DynamicDrawUsage);
      this.joints.instanceMatrix.setUsage(T.DynamicDrawUsage);
      this.edges.forEach(([a, b], k) => this.bones.setColorAt(k, colour(sides[a] === "mid" ? sides[b] : sides[a])));
      names.forEach((nm, j) => this.joints.setColorAt(j, colour(sides[j])));
      this.boneR = 0.016 * r;
      this.jointR = names.map((nm) => (nm === "head" ? 0.055 : 0.026) * r);
      this.bones.frustumCulled = false;
      this.joints.frustumCulled = false;
      this.scene.add(this.bones, this.joints);

      // ground: a plane, a grid of 25 cm-ish squares, and an arrow for the running direction
      const size = 3 * r;
      const plane = new T.Mesh(new T.PlaneGeometry(size, size), new T.MeshBasicMaterial({ color: 0x1e252d }));
      plane.rotation.x = -Math.PI / 2;
      plane.position.y = this.groundY - 0.002 * r;
      const grid = new T.GridHelper(size, 12, 0x56616e, 0x343c46);
      grid.position.y = this.groundY;
      this.scene.add(plane, grid);
      const f = this.forward;
      const s = this.right;
      const y = this.groundY + 0.003 * r;
      const tip = f.clone().multiplyScalar(0.75 * r);
      const base = f.clone().multiplyScalar(0.55 * r);
      const arrowGeo = new T.BufferGeometry();
      const pts = [
        tip,
        base.clone().addScaledVector(s, 0.08 * r),
        base.clone().addScaledVector(s, -0.08 * r),
      ];
      arrowGeo.setAttribute("position", new T.BufferAttribute(new Float32Array(pts.flatMap((p) => [p.x, y, p.z])), 3));
      const arrow = new T.Mesh(arrowGeo, new T.MeshBasicMaterial({ color: 0x8fa3b8, side: T.DoubleSide }));
      this.scene.add(arrow);
      this.scene.add(this.label(T, "running direction", f.clone().multiplyScalar(0.65 * r).setY(y + 0.03 * r), r));
      // the shadow of the feet on the ground: a line from each ankle down to the floor
      const dropGeo = new T.BufferGeometry();
      dropGeo.setAttribute("position", new T.BufferAttribute(new Float32Array(12), 3));
      this.drops = new T.LineSegments(dropGeo, new T.LineBasicMaterial({ color: 0x7a8794 }));
      this.drops.frustumCulled = false;
      this.scene.add(this.drops);
      this.footIdx = [names.indexOf("left_ankle"), names.indexOf("right_ankle")];
    }
    label(T, text, at, r) {
      const c = document.createElement("canvas");
      c.width = 512;
      c.height = 64;
      const g = c.getContext("2d");
      g.font = "32px system-ui, sans-serif";
      g.fillStyle = "#9fb0c2";
      g.textAlign = "center";
      g.textBaseline = "middle";
      g.fillText(text, 256, 32);
      const tex = new T.CanvasTexture(c);
      tex.colorSpace = T.SRGBColorSpace;
      const sprite = new T.Sprite(new T.SpriteMaterial({ map: tex, depthWrite: false }));
      sprite.position.copy(at);
      sprite.scale.set(0.4 * r, 0.05 * r, 1);
      return sprite;
    }
    setView(kind) {
      // far enough to see the whole runner and the direction arrow, in a tall panel too
      const d = Math.max(2.4, 2.2 / this.camera.aspect) * this.span;
      const T = window.THREE;
      const t = this.target;
      const p = new T.Vector3();
      if (kind === "side") {
        // from the side the camera saw (scene +z is towards the camera), square to the runner
        const sign = this.right.z >= 0 ? 1 : -1;
        p.copy(t).addScaledVector(this.right, sign * d);
      } else if (kind === "front") {
        p.copy(t).addScaledVector(this.forward, d);
      } else if (kind === "top") {
        p.copy(t).addScaledVector(this.up, d).addScaledVector(this.forward, -0.01 * d);
      } else {
        p.set(t.x, t.y, t.z + d);
      }
      this.camera.position.copy(p);
      this.controls.target.copy(t);
      this.controls.update();
      document.querySelectorAll(".view-buttons button").forEach((b) => b.classList.toggle("active", b.dataset.view === kind));
      this.render();
    }
    resize() {
      const r = this.view.getBoundingClientRect();
      const w = Math.max(1, Math.round(r.width));
      const h = Math.max(1, Math.round(r.height));
      this.renderer.setSize(w, h, false);
      this.renderer.domElement.style.width = "100%";
      this.renderer.domElement.style.height = "100%";
      this.camera.aspect = w / h;
      this.camera.updateProjectionMatrix();
      this.render();
    }
    draw(i) {
      this.frame = i;
      const T = window.THREE;
      const m = new T.Matrix4();
      const q = new T.Quaternion();
      const a = new T.Vector3();
      const b = new T.Vector3();
      const mid = new T.Vector3();
      const dir = new T.Vector3();
      const sc = new T.Vector3();
      const yAxis = new T.Vector3(0, 1, 0);
      const zero = new T.Matrix4().makeScale(0, 0, 0);
      const ok = (v) => Number.isFinite(v.x) && Number.isFinite(v.y) && Number.isFinite(v.z);
      this.edges.forEach(([ja, jb], k) => {
        this.pos(i, ja, a);
        this.pos(i, jb, b);
        if (!ok(a) || !ok(b)) return this.bones.setMatrixAt(k, zero);
        dir.subVectors(b, a);
        const len = dir.length();
        if (len < 1e-9) return this.bones.setMatrixAt(k, zero);
        q.setFromUnitVectors(yAxis, dir.divideScalar(len));
        mid.addVectors(a, b).multiplyScalar(0.5);
        m.compose(mid, q, sc.set(this.boneR, len, this.boneR));
        this.bones.setMatrixAt(k, m);
      });
      q.identity();
      for (let j = 0; j < this.D.k3; j++) {
        this.pos(i, j, a);
        if (!ok(a)) this.joints.setMatrixAt(j, zero);
        else this.joints.setMatrixAt(j, m.compose(a, q, sc.setScalar(this.jointR[j])));
      }
      this.bones.instanceMatrix.needsUpdate = true;
      this.joints.instanceMatrix.needsUpdate = true;
      const drop = this.drops.geometry.attributes.position;
      this.footIdx.forEach((j, k) => {
        if (j < 0) return;
        this.pos(i, j, a);
        const y0 = ok(a) ? a.y : this.groundY;
        drop.setXYZ(2 * k, a.x || 0, y0, a.z || 0);
        drop.setXYZ(2 * k + 1, a.x || 0, this.groundY, a.z || 0);
      });
      drop.needsUpdate = true;
      this.render();
    }
    render() {
      this.renderer.render(this.scene, this.camera);
    }
  }

  // ------------------------------------------------------------------------------------------------
  // Timeline: gait events over the whole clip, aligned with the range input under them
  // ------------------------------------------------------------------------------------------------

  const THUMB_W = 14; // px, as in viewer.css

  class Timeline {
    constructor(D, canvas, input) {
      this.D = D;
      this.canvas = canvas;
      this.input = input;
      input.max = String(Math.max(0, D.n - 1));
      this.events = (D.metrics && D.metrics.events) || [];
      this.steps = (D.metrics && D.metrics.steps) || [];
      new ResizeObserver(() => this.resize()).observe(canvas);
      this.resize();
    }
    xOf(i, w) {
      const k = dpr();
      const max = Math.max(1, this.D.n - 1);
      return ((THUMB_W / 2 + ((w / k - THUMB_W) * i) / max) * k);
    }
    resize() {
      const r = this.canvas.getBoundingClientRect();
      const k = dpr();
      this.canvas.width = Math.max(1, Math.round(r.width * k));
      this.canvas.height = Math.max(1, Math.round(r.height * k));
      this.drawStatic();
    }
    drawStatic() {
      const { canvas } = this;
      const ctx = canvas.getContext("2d");
      const w = canvas.width;
      const h = canvas.height;
      const k = dpr();
      ctx.clearRect(0, 0, w, h);
      const rowH = h / 2;
      SIDES.forEach((side, r) => {
        ctx.fillStyle = "rgba(255,255,255,0.03)";
        ctx.fillRect(0, r * rowH + 1, w, rowH - 2);
      });
      // stance: strike -> toe-off, shaded
      for (const s of this.steps) {
        if (s.strike === null || s.toe_off === null) continue;
        const r = s.side === "right" ? 1 : 0;
        ctx.fillStyle = s.side === "right" ? "rgba(0,160,255,0.35)" : "rgba(255,140,0,0.35)";
        const x0 = this.xOf(s.strike, w);
        const x1 = this.xOf(s.toe_off, w);
        ctx.fillRect(x0, r * rowH + 2, Math.max(1, x1 - x0), rowH - 4);
      }
      for (const [side, kind, index] of this.events) {
        const x = Math.round(this.xOf(index, w)) + 0.5;
        ctx.strokeStyle = side === 1 ? COLOUR.right : COLOUR.left;
        ctx.lineWidth = Math.max(1, 1.5 * k);
        ctx.beginPath();
        if (kind === 0) {
          ctx.moveTo(x, side * rowH + 1);
          ctx.lineTo(x, side * rowH + rowH - 1);
        } else {
          ctx.moveTo(x, side * rowH + rowH * 0.55);
          ctx.lineTo(x, side * rowH + rowH - 1);
        }
        ctx.stroke();
      }
      ctx.fillStyle = "#9aa4b1";
      ctx.font = `${10 * k}px system-ui, sans-serif`;
      ctx.textBaseline = "middle";
      if (this.events.length) {
        ctx.fillText("L", 2 * k, rowH / 2);
        ctx.fillText("R", 2 * k, rowH * 1.5);
      }
    }
    draw(i) {
      this.input.value = String(i);
    }
  }

  // ------------------------------------------------------------------------------------------------
  // Angle curves with a cursor at the current frame
  // ------------------------------------------------------------------------------------------------

  class Charts {
    constructor(D, groups, box, chipsBox, wholeToggle) {
      this.D = D;
      this.box = box;
      this.groups = groups.filter((g) => g.measured);
      this.wholeToggle = wholeToggle;
      this.steps = (D.metrics && D.metrics.steps) || [];
      this.strikes = ((D.metrics && D.metrics.events) || []).filter((e) => e[1] === 0);
      this.onSeek = () => {};
      this.whole = D.duration <= 12;
      wholeToggle.checked = this.whole;
      wholeToggle.addEventListener("change", () => {
        this.whole = wholeToggle.checked;
        this.cache.clear();
        this.draw(this.frame);
      });
      this.visible = new Set(this.groups.filter((g) => DEFAULT_CHARTS.includes(g.key)).map((g) => g.key));
      if (!this.visible.size && this.groups.length) this.visible.add(this.groups[0].key);
      this.cache = new Map();
      this.charts = new Map();
      for (const g of this.groups) {
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = g.title;
        b.title = g.hint;
        b.classList.toggle("on", this.visible.has(g.key));
        b.addEventListener("click", () => {
          if (this.visible.has(g.key)) this.visible.delete(g.key);
          else this.visible.add(g.key);
          b.classList.toggle("on", this.visible.has(g.key));
          this.layout();
        });
        chipsBox.append(b);
      }
      this.layout();
      new ResizeObserver(() => {
        this.cache.clear();
        this.sizeAll();
        this.draw(this.frame);
      }).observe(box);
    }
    layout() {
      this.box.textContent = "";
      this.charts.clear();
      this.cache.clear();
      for (const g of this.groups) {
        if (!this.visible.has(g.key)) continue;
        const wrap = document.createElement("div");
        wrap.className = "chart";
        const c = document.createElement("canvas");
        c.setAttribute("aria-label", g.title);
        c.addEventListener("pointerdown", (ev) => this.click(g, c, ev));
        wrap.append(c);
        this.box.append(wrap);
        this.charts.set(g.key, { g, c });
      }
      this.sizeAll();
      if (this.frame !== undefined) this.draw(this.frame);
    }
    sizeAll() {
      const k = dpr();
      for (const { c } of this.charts.values()) {
        const r = c.getBoundingClientRect();
        c.width = Math.max(1, Math.round(r.width * k));
        c.height = Math.max(1, Math.round(r.height * k));
      }
    }
    range(i) {
      const D = this.D;
      if (this.whole) return [0, D.n - 1];
      const half = 3; // seconds either side of the cursor
      let t0 = D.t[i] - half;
      let t1 = D.t[i] + half;
      if (t0 < D.t[0]) [t0, t1] = [D.t[0], Math.min(D.t[D.n - 1], D.t[0] + 2 * half)];
      if (t1 > D.t[D.n - 1]) [t0, t1] = [Math.max(D.t[0], D.t[D.n - 1] - 2 * half), D.t[D.n - 1]];
      return [frameAtTime(D, t0), Math.min(D.n - 1, frameAtTime(D, t1) + 1)];
    }
    geometry(c) {
      const k = dpr();
      return { k, left: 40 * k, right: c.width - 8 * k, top: 16 * k, bottom: c.height - 16 * k };
    }
    click(g, c, ev) {
      const [i0, i1] = this.range(this.frame || 0);
      const r = c.getBoundingClientRect();
      const { k, left, right } = this.geometry(c);
      const x = (ev.clientX - r.left) * k;
      const D = this.D;
      const t = D.t[i0] + ((x - left) / (right - left)) * (D.t[i1] - D.t[i0]);
      this.onSeek(frameAtTime(D, t));
    }
    /** The curves of one chart (everything but the cursor), cached while the window stays put. */
    background(entry, i0, i1) {
      const key = `${entry.g.key}:${i0}:${i1}:${entry.c.width}x${entry.c.height}`;
      if (entry.cacheKey === key && entry.bg) return entry.bg;
      const { g, c } = entry;
      const D = this.D;
      const bg = entry.bg || document.createElement("canvas");
      bg.width = c.width;
      bg.height = c.height;
      const ctx = bg.getContext("2d");
      const { k, left, right, top, bottom } = this.geometry(c);
      const t0 = D.t[i0];
      const t1 = Math.max(D.t[i1], t0 + 1e-6);
      const X = (t) => left + ((t - t0) / (t1 - t0)) * (right - left);
      let lo = Infinity;
      let hi = -Infinity;
      const keys = Object.entries(g.members);
      for (const [, key] of keys) {
        for (let i = i0; i <= i1; i++) {
          const v = D.value(key, i);
          if (Number.isFinite(v)) {
            lo = Math.min(lo, v);
            hi = Math.max(hi, v);
          }
        }
      }
      if (!Number.isFinite(lo)) [lo, hi] = [0, 1];
      const pad = Math.max(2, (hi - lo) * 0.08);
      lo -= pad;
      hi += pad;
      const Y = (v) => bottom - ((v - lo) / (hi - lo)) * (bottom - top);
      ctx.clearRect(0, 0, bg.width, bg.height);
      // stance phases and foot strikes of the window
      for (const s of this.steps) {
        if (s.strike === null || s.strike > i1) continue;
        const end = s.toe_off !== null ? s.toe_off : s.strike;
        if (end < i0) continue;
        ctx.fillStyle = s.side === "right" ? "rgba(0,160,255,0.10)" : "rgba(255,140,0,0.10)";
        const xa = X(D.t[s.strike]);
        ctx.fillRect(xa, top, Math.max(1, X(D.t[end]) - xa), bottom - top);
      }
      ctx.setLineDash([4 * k, 4 * k]);
      ctx.lineWidth = k;
      for (const [side, , index] of this.strikes) {
        if (index < i0 || index > i1) continue;
        const x = Math.round(X(D.t[index])) + 0.5;
        ctx.strokeStyle = side === 1 ? "rgba(0,160,255,0.7)" : "rgba(255,140,0,0.7)";
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, bottom);
        ctx.stroke();
      }
      ctx.setLineDash([]);
      // axes: zero line, min/max labels
      ctx.fillStyle = "#9aa4b1";
      ctx.font = `${10 * k}px system-ui, sans-serif`;
      ctx.textBaseline = "middle";
      ctx.textAlign = "right";
      const unit = unitShort(g.unit);
      for (const v of [hi - pad, lo + pad]) ctx.fillText(`${v.toFixed(0)}${unit}`, left - 4 * k, Y(v));
      if (lo < 0 && hi > 0) {
        ctx.strokeStyle = "rgba(255,255,255,0.15)";
        ctx.beginPath();
        ctx.moveTo(left, Math.round(Y(0)) + 0.5);
        ctx.lineTo(right, Math.round(Y(0)) + 0.5);
        ctx.stroke();
      }
      ctx.textAlign = "left";
      ctx.textBaseline = "top";
      ctx.fillStyle = "#e8ebef";
      ctx.font = `600 ${11 * k}px system-ui, sans-serif`;
      ctx.fillText(g.title, left, 2 * k);
      const titleW = ctx.measureText(g.title).width;
      ctx.font = `${10 * k}px system-ui, sans-serif`;
      ctx.fillStyle = "#9aa4b1";
      const note = `${g.hint}${g.sourceLabel ? " · " + g.sourceLabel : ""}`;
      const room = right - (left + titleW + 8 * k);
      let shown = note;
      while (shown.length > 3 && ctx.measureText(shown).width > room) shown = shown.slice(0, -2);
      if (shown !== note) shown = shown.slice(0, -1) + "…";
      ctx.fillText(shown, left + titleW + 8 * k, 3 * k);
      ctx.textBaseline = "bottom";
      ctx.fillText(fmtTime(D.t[i0]), left, c.height);
      ctx.textAlign = "right";
      ctx.fillText(fmtTime(D.t[i1]), right, c.height);
      // the curves: min/max per pixel column when there are more frames than pixels
      const step = Math.max(1, Math.floor((i1 - i0) / (right - left)));
      for (const [side, key] of keys) {
        ctx.strokeStyle = COLOUR[side];
        ctx.lineWidth = 1.6 * k;
        ctx.beginPath();
        let pen = false;
        for (let i = i0; i <= i1; i += step) {
          let v = D.value(key, i);
          if (step > 1) {
            let mn = Infinity;
            let mx = -Infinity;
            for (let j = i; j < Math.min(i + step, i1 + 1); j++) {
              const u = D.value(key, j);
              if (Number.isFinite(u)) {
                mn = Math.min(mn, u);
                mx = Math.max(mx, u);
              }
            }
            if (Number.isFinite(mn)) {
              const x = X(D.t[i]);
              if (pen) ctx.lineTo(x, Y(mn));
              else ctx.moveTo(x, Y(mn));
              ctx.lineTo(x, Y(mx));
              pen = true;
              continue;
            }
            v = NaN;
          }
          if (!Number.isFinite(v)) {
            pen = false;
            continue;
          }
          if (pen) ctx.lineTo(X(D.t[i]), Y(v));
          else ctx.moveTo(X(D.t[i]), Y(v));
          pen = true;
        }
        ctx.stroke();
      }
      entry.bg = bg;
      entry.cacheKey = key;
      entry.scale = { X, Y };
      return bg;
    }
    draw(i) {
      if (i === undefined) return;
      this.frame = i;
      const [i0, i1] = this.range(i);
      for (const entry of this.charts.values()) {
        const { g, c } = entry;
        const ctx = c.getContext("2d");
        const bg = this.background(entry, i0, i1);
        ctx.clearRect(0, 0, c.width, c.height);
        ctx.drawImage(bg, 0, 0);
        const { X, Y } = entry.scale;
        const { k, top, bottom } = this.geometry(c);
        const x = Math.round(X(this.D.t[i])) + 0.5;
        ctx.strokeStyle = "#ffffff";
        ctx.lineWidth = k;
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, bottom);
        ctx.stroke();
        for (const [side, key] of Object.entries(g.members)) {
          const v = this.D.value(key, i);
          if (!Number.isFinite(v)) continue;
          ctx.fillStyle = COLOUR[side];
          ctx.beginPath();
          ctx.arc(x, Y(v), 3.5 * k, 0, 2 * Math.PI);
          ctx.fill();
        }
      }
    }
  }

  // ------------------------------------------------------------------------------------------------
  // The numbers of the current frame
  // ------------------------------------------------------------------------------------------------

  class Readout {
    constructor(D, groups, box) {
      this.D = D;
      this.groups = groups.filter((g) => g.measured);
      this.box = box;
      if (!this.groups.length) {
        box.innerHTML = `<p class="muted">${
          D.metrics ? "No angle series in this analysis." : "No running metrics in this analysis (partial result): no angles to show."
        }</p>`;
        this.cells = [];
        return;
      }
      const rows = this.groups
        .map((g) => {
          const cols = g.members.mid
            ? `<td class="v" colspan="2" data-key="${esc(g.members.mid)}"></td>`
            : `<td class="v left-v" data-key="${esc(g.members.left || "")}"></td><td class="v right-v" data-key="${esc(g.members.right || "")}"></td>`;
          return `<tr title="${esc(g.hint)}"><td class="name">${esc(g.title)}<div class="src">${esc(g.sourceLabel)}</div></td>${cols}</tr>`;
        })
        .join("");
      box.innerHTML = `<table><thead><tr><th class="name" id="readout-time"></th><th>left</th><th>right</th></tr></thead><tbody>${rows}</tbody></table>`;
      this.cells = [...box.querySelectorAll("td.v")].map((td) => [td, td.dataset.key]);
      this.units = {};
      for (const g of this.groups) for (const key of Object.values(g.members)) this.units[key] = g.unit;
      this.timeCell = box.querySelector("#readout-time");
    }
    update(i) {
      for (const [td, key] of this.cells) td.textContent = key ? fmt(this.D.value(key, i), this.units[key]) : "";
      if (this.timeCell) this.timeCell.textContent = `frame ${i + 1} · ${fmtTime(this.D.t[i])}`;
    }
  }

  // ------------------------------------------------------------------------------------------------
  // Summary against typical ranges; the step table
  // ------------------------------------------------------------------------------------------------

  function statusOf(mean, normal) {
    if (!normal || mean === null || mean === undefined) return ["none", "no range"];
    if (mean < normal[0]) return ["out", "below"];
    if (mean > normal[1]) return ["out", "above"];
    return ["in", "in range"];
  }

  function metricOrder(M) {
    const defs = M.definitions || {};
    const names = Object.keys(defs);
    for (const k of Object.keys(M.summary || {})) if (!names.includes(k)) names.push(k);
    return names;
  }

  function sourcesOfMetric(M, name) {
    const labels = new Set();
    for (const s of M.steps) if (s.sources[name] && s.metrics[name] !== undefined) labels.add(s.sources[name]);
    return [...labels];
  }

  function renderSummary(D, box) {
    const M = D.metrics;
    if (!M) {
      box.innerHTML = `<p class="muted">No running metrics: this is a partial result (the poses were analysed, the metrics could not be computed). See the notes below.</p>`;
      return;
    }
    const defs = M.definitions || {};
    const labels = D.doc.source_labels || {};
    const rows = [];
    const unmeasured = [];
    for (const name of metricOrder(M)) {
      const d = defs[name] || { title: name, unit: M.units[name] || "" };
      const s = (M.summary || {})[name] || { n: 0, mean: null };
      const anyValue = M.steps.some((st) => st.metrics[name] !== undefined);
      if (!s.n && !anyValue) {
        unmeasured.push(d.title + (d.unit && d.unit.startsWith("%") ? " (%)" : ""));
        continue;
      }
      const unit = d.unit || M.units[name] || "";
      const [cls, text] = s.n ? statusOf(s.mean, d.normal) : ["none", "flagged"];
      const bySide = SIDES.map((side) => {
        const v = (((M.summary_by_side || {})[side] || {})[name] || {}).mean;
        return `<td class="${side}-v opt">${fmt(v, unit, false)}</td>`;
      }).join("");
      const asym = (M.asymmetry_pct || {})[name];
      const normal = d.normal ? `${d.normal[0]}–${d.normal[1]}${unitShort(unit)}` : "–";
      const src = sourcesOfMetric(M, name).map((x) => labels[x] || x).join(", ");
      const tip = [d.description, d.normal_source ? `typical range: ${d.normal_source}` : ""].filter(Boolean).join("\n");
      const sd = s.sd !== null && s.sd !== undefined ? ` <span class="sd">± ${fmt(s.sd, unit, false)}</span>` : "";
      const mean = s.n ? `${fmt(s.mean, unit)}${sd}` : "–";
      const statusTip =
        cls === "out"
          ? `the mean is ${text} the typical range`
          : s.n
            ? ""
            : "every step's value was left out of the summary by a quality flag (see the steps)";
      rows.push(
        `<tr class="${cls === "out" ? "outside" : ""}" title="${esc(tip)}"><td class="name">${esc(d.title)} <span class="muted small">${esc(unit)}</span></td>` +
          `<td class="${cls === "out" ? "out" : ""}">${mean}</td><td class="opt">${s.n || 0}</td>${bySide}` +
          `<td class="opt">${fmt(asym, "%", false)}</td><td>${normal}</td>` +
          `<td><span class="status ${cls}" title="${esc(statusTip)}">${text}</span></td>` +
          `<td class="muted small opt">${esc(src)}</td></tr>`,
      );
    }
    box.innerHTML =
      `<div class="scroll-x"><table><thead><tr><th class="name">metric</th><th>mean ± SD</th><th class="opt">steps</th>` +
      `<th class="opt">left</th><th class="opt">right</th><th class="opt">asym. %</th><th>typical</th><th>status</th>` +
      `<th class="opt">source</th></tr></thead>` +
      `<tbody>${rows.join("") || '<tr><td colspan="9" class="muted">nothing measured</td></tr>'}</tbody></table></div>` +
      (unmeasured.length ? `<p class="muted small">Not measured in this clip: ${esc(unmeasured.join(", "))}.</p>` : "") +
      `<p class="muted small">Typical ranges are for healthy distance runners at endurance speeds; they orient, they do not diagnose. Hover a row for its definition and source.</p>`;
  }

  class StepsTable {
    constructor(D, box, scrollBox) {
      this.D = D;
      this.box = box;
      this.scrollBox = scrollBox;
      this.onSeek = () => {};
      const M = D.metrics;
      this.steps = M ? M.steps : [];
      this.rows = [];
      this.current = -1;
      if (!M) {
        box.innerHTML = `<p class="muted">No steps: the running metrics were not computed.</p>`;
        return;
      }
      if (!this.steps.length) {
        box.innerHTML = `<p class="muted">No foot strike was found in this clip, so there are no steps.</p>`;
        return;
      }
      const defs = M.definitions || {};
      const labels = D.doc.source_labels || {};
      const names = metricOrder(M).filter((nm) => this.steps.some((s) => s.metrics[nm] !== undefined));
      const head = names
        .map((nm) => {
          const d = defs[nm] || { title: nm, unit: "" };
          return `<th title="${esc(d.description || "")}">${esc(d.title)}<br><span class="small">${esc(d.unit || "")}</span></th>`;
        })
        .join("");
      const t = D.t;
      const body = this.steps
        .map((s, k) => {
          const cells = names
            .map((nm) => {
              const v = s.metrics[nm];
              const d = defs[nm] || {};
              const excluded = s.excluded[nm];
              const outside = d.normal && v !== undefined && (v < d.normal[0] || v > d.normal[1]);
              const cls = excluded ? "excluded" : outside ? "out" : "";
              const tips = [];
              if (s.sources[nm]) tips.push(`source: ${labels[s.sources[nm]] || s.sources[nm]}`);
              if (s.errors_deg[nm] !== undefined) tips.push(`validated error ±${s.errors_deg[nm]}°`);
              if (excluded) tips.push(`left out of the summary: ${excluded.map(flagLabel).join(", ")}`);
              if (outside) tips.push(`outside the typical ${d.normal[0]}–${d.normal[1]}`);
              return `<td class="${cls}" title="${esc(tips.join("\n"))}">${fmt(v, d.unit || "", false)}</td>`;
            })
            .join("");
          const bySource = new Map();
          for (const [nm, src] of Object.entries(s.sources)) {
            const lab = labels[src] || src;
            if (!bySource.has(lab)) bySource.set(lab, []);
            bySource.get(lab).push((defs[nm] && defs[nm].title) || nm);
          }
          const src =
            bySource.size <= 1
              ? [...bySource.keys()].join("")
              : [...bySource.entries()].map(([lab, ms]) => `${lab}: ${ms.join(", ")}`).join("; ");
          const flags = s.flags.map((f) => `<span class="flag">${esc(flagLabel(f))}</span>`).join("");
          const strikeT = s.strike !== null ? fmtTime(t[s.strike]) : "–";
          const toeT = s.toe_off !== null ? fmtTime(t[s.toe_off]) : "–";
          return (
            `<tr data-step="${k}"><td>${k + 1}</td><td class="name"><span class="side-tag ${esc(s.side)}">${esc(s.side)}</span></td>` +
            `<td>${strikeT}</td><td>${toeT}</td>${cells}<td class="wrap small">${esc(src)}</td><td class="wrap">${flags}</td></tr>`
          );
        })
        .join("");
      box.innerHTML =
        `<table><thead><tr><th>#</th><th class="name">side</th><th>foot strike</th><th>toe-off</th>${head}` +
        `<th class="name">angle source</th><th class="name">flags</th></tr></thead><tbody>${body}</tbody></table>`;
      this.rows = [...box.querySelectorAll("tbody tr")];
      box.querySelector("tbody").addEventListener("click", (ev) => {
        const tr = ev.target.closest("tr[data-step]");
        if (!tr) return;
        const s = this.steps[Number(tr.dataset.step)];
        if (s.strike !== null) this.onSeek(s.strike, true);
      });
      // steps ordered by strike, for finding the current one
      this.order = this.steps.map((s, k) => [s.strike, k]).filter(([i]) => i !== null).sort((a, b) => a[0] - b[0]);
    }
    currentStep(i) {
      const o = this.order || [];
      let lo = 0;
      let hi = o.length - 1;
      let found = -1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (o[mid][0] <= i) {
          found = mid;
          lo = mid + 1;
        } else hi = mid - 1;
      }
      if (found < 0) return -1;
      const k = o[found][1];
      const s = this.steps[k];
      const end = s.next_strike !== null ? s.next_strike : s.toe_off !== null ? s.toe_off : s.strike;
      return i <= end ? k : -1;
    }
    highlight(i) {
      const k = this.currentStep(i);
      if (k === this.current) return;
      if (this.current >= 0 && this.rows[this.current]) this.rows[this.current].classList.remove("current");
      this.current = k;
      const tr = this.rows[k];
      if (!tr) return;
      tr.classList.add("current");
      // keep the row visible inside the table's own scroll box (never scroll the page); row positions
      // are measured once (and again after a resize), so stepping frames forces no layout
      const box = this.scrollBox;
      if (!this.geom) {
        const head = box.querySelector("thead").offsetHeight;
        this.geom = { head, view: box.clientHeight, rows: this.rows.map((r) => [r.offsetTop, r.offsetHeight]) };
        if (!this.watching) {
          this.watching = new ResizeObserver(() => (this.geom = null));
          this.watching.observe(box);
        }
      }
      const [rowTop, rowH] = this.geom.rows[k];
      const top = rowTop - this.geom.head;
      const scroll = box.scrollTop;
      if (top < scroll || rowTop + rowH > scroll + this.geom.view) {
        box.scrollTop = Math.max(0, top - this.geom.view / 3);
      }
    }
  }

  // ------------------------------------------------------------------------------------------------
  // Header, notes
  // ------------------------------------------------------------------------------------------------

  function renderMeta(D) {
    const v = D.doc.video || {};
    const parts = [];
    if (v.file) parts.push(`<b>${esc(v.file)}</b>`);
    if (v.width && v.height) parts.push(`${v.width}×${v.height}`);
    parts.push(`${D.n} frames, ${D.duration.toFixed(2)} s`);
    if (v.fps) parts.push(`${v.fps.toFixed(v.fps % 1 ? 2 : 0)} fps${v.time_scale && v.time_scale !== 1 ? ` (slow motion ×${v.time_scale.toFixed(2)})` : ""}`);
    const view = D.metrics && D.metrics.view;
    if (view && view.kind) parts.push(`camera view: ${esc(view.kind)}${Number.isFinite(view.yaw_deg) ? ` (${view.yaw_deg.toFixed(0)}° turned)` : ""}`);
    $("meta").innerHTML = parts.join(" · ");
    const models = Object.entries(D.doc.models || {}).filter(([, name]) => name).map(([role, name]) => `${role}: ${esc(name)}`);
    $("footer").innerHTML =
      `Gaitway analysis viewer · 3D units: ${esc(D.doc.units3d || "?")}${models.length ? " · models: " + models.join(", ") : ""}` +
      ` · keys: space play/pause, ← → or , . one frame, shift+← → ten frames, [ ] previous/next foot strike`;
  }

  function renderNotes(D) {
    const items = [];
    const M = D.metrics;
    if (!M) items.push("Running metrics were not computed for this video (partial result): only the skeletons are shown.");
    for (const f of (M && M.flags) || []) items.push(f);
    for (const n of (M && M.time_base_notes) || []) if (!items.includes(n)) items.push(`time base: ${n}`);
    for (const w of D.doc.warnings || []) items.push(`pose: ${w}`);
    items.push("2D skeleton: hollow joints were filled in (the 2D model did not see them); faint ones have a low score.");
    $("notes").innerHTML = items.map((x) => `<li>${esc(x)}</li>`).join("");
    if (!M) {
      const b = $("banner");
      b.hidden = false;
      b.textContent = "Partial result: the poses were analysed but the running metrics were not computed. See the notes.";
    }
  }

  // ------------------------------------------------------------------------------------------------
  // The player: one clock for everything
  // ------------------------------------------------------------------------------------------------

  class Player {
    constructor(D) {
      this.D = D;
      this.frame = 0;
      this.playing = false;
      this.speed = 1;
      this.pending = false;
      this.video = document.querySelector("#video-view video");
      this.videoOk = false;
      this.parts = [];
      this.clockT = 0;
    }
    /** A panel to redraw with every frame shown: fn(i). */
    add(name, fn) {
      this.parts.push([name, fn]);
    }
    /** Show frame i (clamped). fromVideo: the video already shows it (playback), do not seek it. */
    seek(i, fromVideo = false) {
      const n = this.D.n;
      i = clamp(Math.round(i), 0, n - 1);
      if (!fromVideo && this.playing) this.pause();
      this.frame = i;
      body.dataset.frame = String(i);
      if (!fromVideo && this.videoOk) this.seekVideo(i);
      this.schedule();
    }
    seekVideo(i) {
      const v = this.video;
      const target = (i + 0.5) / this.D.fpsNominal;
      if (Math.abs(v.currentTime - target) > 0.25 / this.D.fpsNominal) v.currentTime = target;
    }
    schedule() {
      if (this.pending) return;
      this.pending = true;
      requestAnimationFrame(() => this.renderNow());
    }
    renderNow() {
      this.pending = false;
      const timing = this.timing;
      if (timing) timing.renders += 1;
      for (const [name, fn] of this.parts) {
        if (!timing) {
          fn(this.frame);
          continue;
        }
        const t0 = performance.now();
        fn(this.frame);
        timing.ms[name] = (timing.ms[name] || 0) + performance.now() - t0;
      }
    }
    /** Video playback rate for a speed relative to real time. */
    rate() {
      return clamp((this.speed * this.D.fpsNominal) / this.D.fpsReal, 0.0625, 16);
    }
    setSpeed(s) {
      this.speed = s;
      if (this.videoOk) this.video.playbackRate = this.rate();
    }
    play() {
      if (this.playing) return;
      const D = this.D;
      if (this.frame >= D.n - 1) this.seek(0);
      this.playing = true;
      this.onState(true);
      if (this.videoOk) {
        const v = this.video;
        v.playbackRate = this.rate();
        const onFrame = (now, meta) => {
          if (!this.playing) return;
          const i = clamp(Math.round(meta.mediaTime * D.fpsNominal), 0, D.n - 1);
          if (i !== this.frame) this.seek(i, true);
          v.requestVideoFrameCallback(onFrame);
        };
        if (v.requestVideoFrameCallback) v.requestVideoFrameCallback(onFrame);
        else {
          const poll = () => {
            if (!this.playing) return;
            this.seek(Math.floor(v.currentTime * D.fpsNominal + 1e-3), true);
            requestAnimationFrame(poll);
          };
          requestAnimationFrame(poll);
        }
        v.play().catch(() => this.pause());
        return;
      }
      this.clockT = D.t[this.frame];
      let last = null;
      const tick = (now) => {
        if (!this.playing) return;
        if (last !== null) this.clockT += ((now - last) / 1000) * this.speed;
        last = now;
        if (this.clockT >= D.t[D.n - 1]) {
          this.seek(D.n - 1, true);
          this.pause();
          return;
        }
        const i = frameAtTime(D, this.clockT);
        if (i !== this.frame) this.seek(i, true);
        requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    }
    pause() {
      if (!this.playing) return;
      this.playing = false;
      if (this.videoOk && !this.video.paused) this.video.pause();
      if (this.videoOk) this.seekVideo(this.frame);
      this.onState(false);
    }
    toggle() {
      if (this.playing) this.pause();
      else this.play();
    }
    onState() {}
  }

  /** Wait for the video's first picture (or its failure): resolves true when it can be played. */
  function videoReady(video, timeoutMs) {
    if (!video) return Promise.resolve(false);
    return new Promise((resolve) => {
      let done = false;
      const finish = (ok) => {
        if (done) return;
        done = true;
        resolve(ok);
      };
      if (video.readyState >= 2) return finish(true);
      video.addEventListener("loadeddata", () => finish(true), { once: true });
      video.addEventListener("error", () => finish(false), { once: true });
      const source = video.querySelector("source");
      if (source) source.addEventListener("error", () => finish(false), { once: true });
      setTimeout(() => finish(video.readyState >= 2), timeoutMs);
    });
  }

  // ------------------------------------------------------------------------------------------------
  // Start
  // ------------------------------------------------------------------------------------------------

  async function main() {
    // the video loads while the data is decoded and the scene built
    const videoEl = document.querySelector("#video-view video");
    const videoLoaded = videoReady(videoEl, 8000);
    const D = await loadData();
    if (window.matchMedia && window.matchMedia("(pointer: coarse)").matches) {
      $("three-hint").textContent = "drag: rotate · pinch: zoom · two-finger drag: pan";
    }
    const v = D.doc.video || {};
    document.documentElement.style.setProperty("--video-aspect", `${v.width || 16} / ${v.height || 9}`);
    renderMeta(D);
    renderNotes(D);
    const groups = seriesGroups(D);
    const player = new Player(D);

    const overlay = new Overlay(D, $("video-view"), $("overlay"));
    let scene = null;
    try {
      scene = new Scene3D(D, $("three-view"));
      body.dataset.webgl = "1";
    } catch (err) {
      body.dataset.webgl = "0";
      const note = $("three-hint");
      note.hidden = false;
      note.textContent = `The 3D view needs WebGL, which this browser did not provide (${err && err.message ? err.message : err}).`;
    }
    const timeline = new Timeline(D, $("events"), $("scrubber"));
    const charts = new Charts(D, groups, $("charts"), $("chart-chips"), $("whole-clip"));
    const readout = new Readout(D, groups, $("angle-readout"));
    renderSummary(D, $("summary"));
    const steps = new StepsTable(D, $("steps"), $("steps-box"));
    if (!charts.groups.length) {
      $("charts-note").textContent = D.metrics ? "No angle series were measured." : "No angle curves: the running metrics were not computed.";
      $("whole-clip").parentElement.hidden = true;
    } else {
      $("charts-note").textContent =
        "Orange left, blue right · shaded: ground contact · dashed: foot strike · white line: this frame · click a curve to go there.";
    }
    if (steps.rows.length) {
      const legend = document.createElement("p");
      legend.className = "muted small";
      legend.textContent =
        "Struck through: left out of the summary by a quality flag (hover a value for why and for its source) · amber: outside the typical range.";
      $("steps-card").append(legend);
    }
    const legend = $("timeline-legend");
    legend.innerHTML = D.metrics && D.metrics.events.length
      ? `<span><i class="strike" style="background:${COLOUR.left}"></i><i class="strike" style="background:${COLOUR.right}"></i>foot strike (left / right)</span>` +
        `<span><i class="toe" style="background:#bbb"></i>toe-off</span>` +
        `<span><i class="stance" style="background:${COLOUR.left}"></i><i class="stance" style="background:${COLOUR.right}"></i>ground contact</span>`
      : `<span>${D.metrics ? "no gait events found" : "no gait events (no running metrics)"}</span>`;

    const clock = $("clock");
    const chip = $("frame-chip");
    player.add("video", (i) => overlay.draw(i));
    if (scene) player.add("3d", (i) => scene.draw(i));
    player.add("timeline", (i) => timeline.draw(i));
    player.add("charts", (i) => charts.draw(i));
    player.add("readout", (i) => readout.update(i));
    player.add("steps", (i) => steps.highlight(i));
    player.add("clock", (i) => {
      clock.innerHTML = `<b>${fmtTime(D.t[i])}</b><span class="muted">frame ${i + 1} / ${D.n}</span>`;
      let seen = false;
      for (let j = 0; j < D.k2 && !seen; j++) seen = Number.isFinite(D.x2(i, j));
      const text = !seen ? "no skeleton in this frame" : D.flags[i] & 2 ? "left/right swap repaired here" : "";
      chip.hidden = !text;
      chip.textContent = text;
    });

    // controls
    const playBtn = $("btn-play");
    player.onState = (playing) => {
      playBtn.innerHTML = playing ? "&#x275A;&#x275A; Pause" : "&#x25B6;&#xFE0E; Play";
    };
    const strikes = ((D.metrics && D.metrics.events) || []).filter((e) => e[1] === 0).map((e) => e[2]).sort((a, b) => a - b);
    const nextStrike = (dir) => {
      const i = player.frame;
      const list = dir > 0 ? strikes.filter((s) => s > i) : strikes.filter((s) => s < i).reverse();
      if (list.length) player.seek(list[0]);
    };
    const stage = $("stage");
    const showStage = () => {
      const r = stage.getBoundingClientRect();
      if (r.bottom < 60 || r.top > window.innerHeight - 60) stage.scrollIntoView({ block: "start", behavior: "smooth" });
    };
    charts.onSeek = (i) => player.seek(i);
    steps.onSeek = (i) => {
      player.seek(i);
      showStage();
    };
    const keepFocus = (el) => el.addEventListener("pointerdown", (ev) => ev.preventDefault());
    for (const b of document.querySelectorAll("#transport button, .view-buttons button")) keepFocus(b);
    playBtn.addEventListener("click", () => player.toggle());
    $("btn-back").addEventListener("click", () => player.seek(player.frame - 1));
    $("btn-fwd").addEventListener("click", () => player.seek(player.frame + 1));
    $("btn-prev-strike").addEventListener("click", () => nextStrike(-1));
    $("btn-next-strike").addEventListener("click", () => nextStrike(1));
    $("btn-prev-strike").disabled = $("btn-next-strike").disabled = !strikes.length;
    $("speed").addEventListener("change", (ev) => player.setSpeed(Number(ev.target.value)));
    $("scrubber").addEventListener("input", (ev) => player.seek(Number(ev.target.value)));
    for (const b of document.querySelectorAll(".view-buttons button")) {
      b.addEventListener("click", () => scene && scene.setView(b.dataset.view));
    }
    document.addEventListener("keydown", (ev) => {
      if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
      const tag = ev.target && ev.target.tagName;
      if (tag === "SELECT" || (tag === "INPUT" && ev.target.type !== "range")) return;
      if (tag === "BUTTON" && (ev.key === " " || ev.key === "Enter")) return;
      const big = ev.shiftKey ? 10 : 1;
      let handled = true;
      if (ev.key === "ArrowRight" || ev.key === "." || ev.key === ">") player.seek(player.frame + big);
      else if (ev.key === "ArrowLeft" || ev.key === "," || ev.key === "<") player.seek(player.frame - big);
      else if (ev.key === " " || ev.key === "k") player.toggle();
      else if (ev.key === "Home") player.seek(0);
      else if (ev.key === "End") player.seek(D.n - 1);
      else if (ev.key === "[") nextStrike(-1);
      else if (ev.key === "]") nextStrike(1);
      else handled = false;
      if (handled) ev.preventDefault();
    });

    // the video, when there is one and it loads; else the skeleton on a plain canvas of the video's size
    const video = player.video;
    const note = $("video-note");
    if (video) {
      video.addEventListener("ended", () => {
        player.pause();
        player.seek(D.n - 1);
      });
      const ok = await videoLoaded;
      if (ok) {
        player.videoOk = true;
        overlay.plain = false;
        video.playbackRate = player.rate();
        player.seekVideo(0);
      } else {
        video.hidden = true;
        note.hidden = false;
        note.textContent = "The video could not be loaded: the skeleton is shown without it.";
      }
    } else {
      note.hidden = false;
      note.textContent = "No video: the skeleton on a canvas of the video's size.";
    }
    player.seek(0);
    player.renderNow();
    window.gaitwayViewer = {
      seek: (i) => player.seek(i),
      play: () => player.play(),
      pause: () => player.pause(),
      renderNow: () => player.renderNow(),
      /** Count redraws and sum each panel's redraw time (ms) from now on; returns what was counted
       * since the previous call ({renders, ms: {panel: total}}); profile(false) stops counting. */
      profile: (on = true) => {
        const timing = player.timing;
        player.timing = on ? { renders: 0, ms: {} } : null;
        return timing || { renders: 0, ms: {} };
      },
      get frame() {
        return player.frame;
      },
      data: D,
    };
    performance.mark("gaitway-ready");
    body.dataset.viewerState = "ready";
  }

  main().catch((err) => {
    body.dataset.viewerState = "error";
    const b = $("banner");
    b.hidden = false;
    b.textContent = `The viewer could not start: ${err && err.message ? err.message : err}`;
    console.error(err);
  });
})();
