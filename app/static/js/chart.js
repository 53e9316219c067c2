// The changes-per-minute chart of the last hour: seeded from GET /live/stats, then
// counted from the server's `counts` events (each says how many changes its batch held).

export class ChangeChart {
  constructor(canvas) {
    this.canvas = canvas;
    this.perMinute = new Array(60).fill(0);
    this.minuteNow = Math.floor(Date.now() / 60000);
    setInterval(() => this.add(0), 30000);  // the bars move on when nothing happens, too
  }

  /** Count `n` changes in the current minute (0 just moves the window) and redraw. */
  add(n) {
    const minute = Math.floor(Date.now() / 60000);
    const shift = Math.min(60, minute - this.minuteNow);
    if (shift > 0) {
      this.perMinute.splice(0, shift);
      this.perMinute.push(...new Array(shift).fill(0));
      this.minuteNow = minute;
    }
    this.perMinute[59] += n;
    this.draw();
  }

  /** Start over from the server's figures (on load, and after a reconnect). */
  async load() {
    const response = await fetch("/live/stats", { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const stats = await response.json();
    this.perMinute.splice(0, 60, ...stats.per_minute);
    this.minuteNow = Math.floor(Date.parse(stats.now) / 60000);
    this.add(0);
  }

  draw() {
    const chart = this.canvas;
    if (!chart?.getContext) return;
    const ctx = chart.getContext("2d");
    const max = Math.max(1, ...this.perMinute);
    const width = chart.width / this.perMinute.length;
    ctx.clearRect(0, 0, chart.width, chart.height);
    ctx.fillStyle = getComputedStyle(chart).color || "#3b6fd8";
    this.perMinute.forEach((value, i) => {
      const height = (value / max) * (chart.height - 2);
      ctx.fillRect(i * width, chart.height - height, Math.max(1, width - 1), height);
    });
    const hour = this.perMinute.reduce((a, b) => a + b);
    chart.title = `${this.perMinute[59]} changes this minute, ${hour} in the last hour`;
  }
}
