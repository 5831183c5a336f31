// The graph page's script (mg.viz.to_html): draws the graph from the JSON in #graph-data,
// shows a node's panel on click, and replays the backward walk the engine recorded.
// Every text from the graph goes in with textContent: names are shown, never parsed as markup.
// Large graphs draw only the boxes near the visible part of the canvas (redrawn on scroll).
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("graph-data").textContent);
  const SVG = "http://www.w3.org/2000/svg";
  const svg = document.getElementById("graph");
  const scene = document.getElementById("scene");
  const canvas = document.getElementById("canvas");
  const panel = document.getElementById("panel");
  const KIND = { op: "op", fused: "fused op", param: "leaf (requires grad)", const: "leaf (no grad)", output: "output" };
  const PAD = 16;  // px of margin around the graph
  const big = data.nodes.length > data.draw_all_limit;  // draw only what is near the view
  let zoom = 1, selected = null, step = 0;              // step: walk steps taken, 0 = before backward
  let drawnBand = null;
  const nodeElements = new Map(), edgeElements = new Map();

  const edgesInto = data.nodes.map(() => []);
  data.edges.forEach((edge, k) => edgesInto[edge.to].push(k));
  const walkStepOf = new Map();
  data.walk.forEach((s, k) => walkStepOf.set(s.node, k));

  // ---- small builders --------------------------------------------------------------------
  function svgElement(tag, attributes, parent) {
    const element = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
    if (parent) parent.appendChild(element);
    return element;
  }
  function htmlElement(tag, text, className, parent) {
    const element = document.createElement(tag);
    if (text !== undefined && text !== null) element.textContent = text;
    if (className) element.className = className;
    if (parent) parent.appendChild(element);
    return element;
  }
  function shapeText(shape) { return "(" + shape.join(", ") + (shape.length === 1 ? ",)" : ")"); }
  function number(value) { return value === null ? "–" : String(value); }

  // ---- drawing ----------------------------------------------------------------------------
  function routePath(points) {
    const [first] = points;
    if (points.length === 2) {  // a straight drop, bent into an S so it leaves and enters vertically
      const [a, b] = points, middle = (a[1] + b[1]) / 2;
      return `M${a[0]},${a[1]} C${a[0]},${middle} ${b[0]},${middle} ${b[0]},${b[1]}`;
    }
    let path = `M${first[0]},${first[1]}`;
    for (let i = 1; i + 2 < points.length; i += 3) path += ` C${points[i]} ${points[i + 1]} ${points[i + 2]}`;
    return path;
  }
  function routeMiddle(points) {
    if (points.length === 2) return [(points[0][0] + points[1][0]) / 2, (points[0][1] + points[1][1]) / 2];
    return points[Math.floor(points.length / 2)];
  }

  function band() {  // the part of the graph (in graph units) worth drawing now
    if (!big) return null;
    const margin = 600 / zoom;
    const top = canvas.scrollTop / zoom - PAD - margin;
    return [top, top + canvas.clientHeight / zoom + 2 * margin];
  }
  function inBand(node, range) { return !range || (node.y + node.h / 2 >= range[0] && node.y - node.h / 2 <= range[1]); }

  function draw() {
    drawnBand = band();
    scene.textContent = "";
    nodeElements.clear(); edgeElements.clear();
    svg.setAttribute("width", (data.width + 2 * PAD) * zoom);
    svg.setAttribute("height", (data.height + 2 * PAD) * zoom);
    svg.setAttribute("viewBox", `${-PAD} ${-PAD} ${data.width + 2 * PAD} ${data.height + 2 * PAD}`);
    const edgeLayer = svgElement("g", {}, scene), nodeLayer = svgElement("g", {}, scene);
    data.edges.forEach((edge, k) => {
      if (!inBand(data.nodes[edge.from], drawnBand) && !inBand(data.nodes[edge.to], drawnBand)) return;
      const group = svgElement("g", { class: "edge", "data-edge": k }, edgeLayer);
      svgElement("path", { d: routePath(edge.route) }, group);
      const [x, y] = routeMiddle(edge.route);
      svgElement("text", { x: x, y: y + 3 }, group).textContent = edge.label;
      edgeElements.set(k, group);
    });
    data.nodes.forEach((node, k) => {
      if (!inBand(node, drawnBand)) return;
      const group = svgElement("g", { class: "node " + node.kind, "data-index": k,
        transform: `translate(${node.x - node.w / 2},${node.y - node.h / 2})` }, nodeLayer);
      svgElement("rect", { width: node.w, height: node.h, rx: node.kind === "op" || node.kind === "fused" ? 9 : 3 }, group);
      svgElement("text", { x: node.w / 2, y: 15, class: "title" }, group).textContent = node.label;
      svgElement("text", { x: node.w / 2, y: 28, class: "sub" }, group).textContent = node.sub;
      const tip = svgElement("title", {}, group); tip.textContent = node.title;
      group.addEventListener("click", () => select(k));
      nodeElements.set(k, group);
    });
    paintState();
  }

  function paintState() {  // classes only: which node is selected, current, visited, receiving
    const current = step > 0 ? data.walk[step - 1].node : null;
    // edges into the current node, in the order of its inputs, that carry a gradient back
    const flowing = new Set(current === null ? [] : edgesInto[current].filter((k, i) => data.walk[step - 1].flows[i]));
    const receiving = new Set([...flowing].map(k => data.edges[k].from));
    nodeElements.forEach((element, k) => {
      const visited = walkStepOf.has(k) && walkStepOf.get(k) < step - 1;
      element.classList.toggle("selected", k === selected);
      element.classList.toggle("current", k === current);
      element.classList.toggle("visited", visited);
      element.classList.toggle("receiving", receiving.has(k));
    });
    edgeElements.forEach((element, k) => {
      element.classList.toggle("flow", flowing.has(k));
      element.classList.toggle("near", selected !== null && current === null && data.edges[k].to === selected);
    });
    document.getElementById("step-count").textContent = step === 0
      ? `step 0 of ${data.walk.length}` : `step ${step} of ${data.walk.length}: ${data.nodes[current].title}`;
  }

  // ---- the side panel ----------------------------------------------------------------------
  function tensorBlock(parent, heading, summary, link, flow) {
    const box = htmlElement("div", null, "tensor" + (flow ? " flow" : ""), parent);
    const name = htmlElement("div", heading, "name", box);
    if (link !== null && link !== undefined) {
      name.appendChild(document.createTextNode(" from "));
      const anchor = htmlElement("a", data.nodes[link].title, null, name);
      anchor.addEventListener("click", () => select(link, true));
    }
    if (!summary) { htmlElement("div", "no gradient reaches it", "row muted", box); return; }
    const row = (key, text) => { const r = htmlElement("div", null, "row", box); htmlElement("span", key, "key", r); r.appendChild(document.createTextNode(text)); };
    row("shape", `${shapeText(summary.shape)} ${summary.dtype}`);
    const more = summary.size > summary.values.length ? ", …" : "";
    row("values", "[" + summary.values.map(number).join(", ") + more + "]");
    row("min/mean/max", `${number(summary.min)} / ${number(summary.mean)} / ${number(summary.max)}`);
    if (summary.nonfinite) row("not finite", String(summary.nonfinite) + " elements");
  }

  function showNode(k) {
    const node = data.nodes[k];
    panel.textContent = "";
    panel.dataset.node = k;
    htmlElement("span", KIND[node.kind], "badge " + node.kind, panel);
    htmlElement("h2", node.title, null, panel);
    if (node.op && node.op !== node.title) htmlElement("div", "op " + node.op, "muted", panel);
    const walked = walkStepOf.get(k);
    const current = step > 0 && data.walk[step - 1].node === k;
    if (current) htmlElement("div", `Backward step ${step} of ${data.walk.length}: this node receives the gradient of its outputs and sends one into each input.`, "banner", panel);
    else if (walked !== undefined) htmlElement("div", `Backward visits this node at step ${walked + 1} of ${data.walk.length}.`, "muted", panel);

    const outputs = node.outputs.map((t, i) => [t, i]).filter(([t]) => t !== null);
    htmlElement("h3", node.kind === "param" || node.kind === "const" ? "value" : "outputs", null, panel);
    outputs.forEach(([t, i]) => tensorBlock(panel, outputs.length > 1 ? `output ${i}` : "output", data.tensors[t]));
    if (node.kind === "output") tensorBlock(panel, "value", data.tensors[node.inputs[0]]);
    if (node.inputs.length && node.kind !== "output") {
      htmlElement("h3", "inputs", null, panel);
      node.inputs.forEach((t, i) => tensorBlock(panel, `input ${i}`, data.tensors[t], data.tensors[t].source));
    }
    if (data.walk.length) {
      htmlElement("h3", "gradient after backward", null, panel);
      const targets = node.kind === "output" ? node.inputs : outputs.map(([t]) => t);
      targets.forEach(t => tensorBlock(panel, "gradient of the root w.r.t. this output", data.tensors[t].grad));
    }
    if (walked !== undefined) {
      htmlElement("h3", "gradient flowing into each input", null, panel);
      data.walk[walked].flows.forEach((flow, i) =>
        tensorBlock(panel, `into input ${i}`, flow, data.tensors[node.inputs[i]].source, current));
    }
    if (node.rule) {
      htmlElement("h3", "derivative rule", null, panel);
      htmlElement("div", node.rule.where, "muted", panel);
      htmlElement("pre", node.rule.text, "rule", panel);
    }
    if (node.kernel) {
      htmlElement("h3", "generated kernel of the cell", null, panel);
      const details = htmlElement("details", null, null, panel);
      details.open = true;
      htmlElement("summary", `${node.kernel.split("\n").length} lines (rnn.compiler.generate_source)`, null, details);
      htmlElement("pre", node.kernel, "kernel", details);
    }
  }

  function showOverview() {
    panel.textContent = "";
    delete panel.dataset.node;
    htmlElement("h2", "How to read this page", null, panel);
    htmlElement("p", "Data flows down: leaves (parameters, inputs, constants) at the top, each op below the tensors it reads, the output at the bottom. Edges carry tensors and are labelled with their shape.", null, panel);
    htmlElement("p", "Click a box for its values, its gradient, and its derivative rule. The backward buttons (or the keys n and p) replay the walk the engine made: the current node is amber, the edges into its inputs carry the gradient it sends.", null, panel);
    const legend = htmlElement("div", null, "legend", panel);
    [["#dbeafe", "#3b82f6", "leaf, requires grad"], ["#f1f5f9", "#94a3b8", "leaf, no grad"], ["#fff", "#475569", "op"],
     ["#ffedd5", "#ea580c", "fused op"], ["#dcfce7", "#16a34a", "output"], ["#fbbf24", "#b45309", "current backward step"]]
      .forEach(([fill, stroke, text]) => {
        const item = htmlElement("span", null, null, legend);
        const swatch = htmlElement("i", null, null, item); swatch.style.background = fill; swatch.style.borderColor = stroke;
        item.appendChild(document.createTextNode(text));
      });
    if (!data.walk.length) htmlElement("p", "The output does not require grad: there is no backward walk to show.", "muted", panel);
  }

  // ---- interaction -------------------------------------------------------------------------
  function reveal(k) {  // scroll so the node is in the middle of the canvas
    const node = data.nodes[k];
    canvas.scrollTo({ left: (node.x + PAD) * zoom - canvas.clientWidth / 2, top: (node.y + PAD) * zoom - canvas.clientHeight / 2 });
    if (big) draw();
  }
  function select(k, scroll) {
    selected = k;
    if (scroll) reveal(k);
    showNode(k);
    paintState();
  }
  function goTo(newStep) {
    step = Math.max(0, Math.min(data.walk.length, newStep));
    if (step === 0) { selected = null; showOverview(); paintState(); return; }
    select(data.walk[step - 1].node, true);
  }

  document.getElementById("step-reset").addEventListener("click", () => goTo(0));
  document.getElementById("step-prev").addEventListener("click", () => goTo(step - 1));
  document.getElementById("step-next").addEventListener("click", () => goTo(step + 1));
  document.getElementById("step-end").addEventListener("click", () => goTo(data.walk.length));
  document.addEventListener("keydown", event => {
    if (event.key === "n") goTo(step + 1);
    if (event.key === "p") goTo(step - 1);
  });
  function setZoom(factor) {
    const centre = [(canvas.scrollLeft + canvas.clientWidth / 2) / zoom, (canvas.scrollTop + canvas.clientHeight / 2) / zoom];  // (padding included)
    zoom = Math.max(0.1, Math.min(3, zoom * factor));
    draw();
    canvas.scrollTo({ left: centre[0] * zoom - canvas.clientWidth / 2, top: centre[1] * zoom - canvas.clientHeight / 2 });
  }
  document.getElementById("zoom-in").addEventListener("click", () => setZoom(1.25));
  document.getElementById("zoom-out").addEventListener("click", () => setZoom(0.8));

  if (big) {  // the depth slider moves through the graph; drawing follows the scroll position
    const depth = document.getElementById("depth");
    document.getElementById("depth-group").hidden = false;
    depth.addEventListener("input", () => {
      canvas.scrollTop = (depth.value / 1000) * (canvas.scrollHeight - canvas.clientHeight);
    });
    let pending = false;
    canvas.addEventListener("scroll", () => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => {
        pending = false;
        const range = band(), room = 300 / zoom;
        if (!drawnBand || Math.abs(range[0] - drawnBand[0]) > room) draw();
        depth.value = 1000 * canvas.scrollTop / Math.max(1, canvas.scrollHeight - canvas.clientHeight);
      });
    });
  }

  document.getElementById("title").textContent = data.title;
  const ops = data.nodes.filter(n => n.kind === "op" || n.kind === "fused").length;
  document.getElementById("stats").textContent =
    `${data.nodes.length} nodes (${ops} ops) · ${data.walk.length} backward steps · layout: ${data.layout}`;
  zoom = Math.max(0.75, Math.min(1, (canvas.clientWidth - 20) / data.width));  // fit the width if it can be read
  draw();
  showOverview();
  document.body.dataset.ready = "1";  // for tests and benchmarks: the page has drawn, this long after navigation
  document.body.dataset.drawnMs = String(Math.round(performance.now()));
})();
