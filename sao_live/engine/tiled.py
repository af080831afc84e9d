"""The Oobleck decoder run in channels-last time tiles, every convolution one GEMM.

Same arithmetic as `oobleck.OobleckDecoder` (it is the oracle in the tests), in another
order: the plain decoder streams each layer over tensors of up to 128 x 2M samples
(SnakeBeta alone makes five passes through memory per call), while this one walks
the time axis in tiles that stay in the CPU cache and fuses each residual unit
(SnakeBeta -> dilated conv -> SnakeBeta -> 1x1 conv -> +x) into one pass per tile.
A transposed convolution with stride s is computed by its s phases at once:
y[j*s + r - p] = x[j] W[:, :, r] + x[j-1] W[:, :, r+s]. Results match the plain decoder
to float rounding (~1e-6 relative) and it runs ~3x faster on a CPU.

`stream` decodes in time order: fed a few latent frames at a time, it hands out the audio those
frames make final; each layer keeps only the input rows its next outputs still read (a
convolution's halo, the upsampler's previous row), so nothing is computed twice.

With several torch threads, each thread decodes its own contiguous run of tiles with
single-threaded ops (torch's thread count is set to 1 for the call and restored after): a
decode is thousands of small ops, and a barrier after each costs time on a quiet machine and a
lot on a busy one, where a core another process holds would stall every op.

Layout: activations are (T, C) per batch item; T time (samples at that layer's rate),
C channels. Weights are pre-arranged once, at construction, as (K*C_in, C_out).

`winograd=True` (fast mode) computes the residual units' 7-tap convolutions by Winograd's
F(4, 7) (`winograd.py`): about a quarter less time for the whole decoder, more fp32 rounding.

`dtype=torch.bfloat16` runs the products in bf16 (inputs and outputs rounded to bf16, sums in
fp32) while SnakeBeta, the residual stream and the output stay fp32; `snake_dtype` also moves
SnakeBeta to bf16. Both are for CPUs with native bf16; docs/engine.md gives what they cost
in accuracy.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

from .oobleck import OobleckDecoder, ResidualUnit, SnakeBeta, WNConv1d, WNConvTranspose1d
from .winograd import WinogradConv

TILE_ELEMENTS = 1 << 18  # rows x channels per tile: 1 MB of fp32, about a core's L2
MIN_TILE_ROWS = 256  # wide layers: enough rows to reuse each weight read from memory


class _Snake:
    def __init__(self, m: SnakeBeta, dtype: torch.dtype = torch.float32):
        self.alpha = m.alpha.detach().exp().to(dtype)  # (C,)
        self.inv_beta = (1.0 / (m.beta.detach().exp() + 1e-9)).to(dtype)
        self.dtype = dtype

    def into(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """out = x + inv_beta * sin(alpha * x)^2 in self.dtype; without temporaries when all
        dtypes agree (the fp32 decoder)."""
        if out.dtype != self.dtype:  # e.g. an fp32 SnakeBeta feeding a bf16 product: round once
            return out.copy_(self.into(x, torch.empty(x.shape, dtype=self.dtype, device=x.device)))
        x = x.to(self.dtype)
        torch.mul(x, self.alpha, out=out)
        out.sin_()
        out.mul_(out)
        return torch.addcmul(x, out, self.inv_beta, out=out)


# Up to this many input channels a K-tap convolution is K GEMMs over shifted views of the rows,
# summed into the output; above, one GEMM over K shifted copies (im2col), whose longer inner
# dimension pays for the copies. Measured per layer at Small's size (docs/engine.md).
SHIFTED_GEMM_MAX_CHANNELS = 256


class _Conv:
    """A (weight-norm folded) Conv1d as GEMMs over shifted input rows."""

    def __init__(self, m: WNConv1d, dtype: torch.dtype = torch.float32, winograd: bool = False):
        w = m.weight.detach().to(dtype)  # (C_out, C_in, K)
        self.dtype = dtype
        self.c_out, self.c_in, self.kernel = w.shape
        self.dilation = m.dilation
        self.halo = (self.kernel - 1) // 2 * self.dilation
        self.bias = None if m.bias is None else m.bias.detach().to(dtype)
        self.weight = self.per_tap = self.taps = self.winograd = None
        if winograd and dtype == torch.float32 and self.kernel == 7 and self.c_in == self.c_out:
            self.winograd = WinogradConv(w, self.bias, self.dilation)
        elif self.c_out * self.kernel <= 64:
            # Few outputs (the final 128 -> 2 conv): one GEMM for all taps' outputs, then shifted
            # sums, beats K GEMMs with 2 output columns.
            self.taps = w.permute(1, 2, 0).reshape(self.c_in, self.kernel * self.c_out).contiguous()
        elif self.kernel > 1 and self.c_in <= SHIFTED_GEMM_MAX_CHANNELS:
            self.per_tap = w.permute(2, 1, 0).contiguous()  # (K, C_in, C_out)
        else:
            self.weight = w.permute(2, 1, 0).reshape(self.kernel * self.c_in, self.c_out).contiguous()
        self.needs_cols = self.weight is not None and self.kernel > 1  # scratch for the shifted copies

    def rows_computed(self, n: int) -> int:
        """Output rows one call computes for n wanted (Winograd works in whole blocks)."""
        return n if self.winograd is None else self.winograd.rows_computed(n)

    def tile(self, rows: torch.Tensor, n: int, cols: torch.Tensor | None, out: torch.Tensor) -> torch.Tensor:
        """Output rows (n, C_out) from rows_computed(n) + 2*halo zero-padded input rows."""
        if self.winograd is not None:
            return self.winograd.tile(rows, n, out)
        if out.dtype != self.dtype and self.taps is None:  # bf16 products into an fp32 stream
            return out.copy_(self.tile(rows, n, cols, out.new_empty(out.shape, dtype=self.dtype)))
        d = self.dilation
        if self.taps is not None:
            per_tap = (rows @ self.taps).view(-1, self.kernel, self.c_out)  # (rows, K, C_out)
            out.copy_(per_tap[:n, 0]) if self.bias is None else torch.add(per_tap[:n, 0], self.bias, out=out)
            for k in range(1, self.kernel):
                out.add_(per_tap[k * d : k * d + n, k])
            return out
        if self.per_tap is not None:
            if self.bias is None:
                torch.mm(rows[:n], self.per_tap[0], out=out)
            else:
                torch.addmm(self.bias, rows[:n], self.per_tap[0], out=out)
            for k in range(1, self.kernel):
                out.addmm_(rows[k * d : k * d + n], self.per_tap[k])
            return out
        if self.kernel == 1:
            lhs = rows[:n]
        else:
            lhs = cols[:n, : self.kernel * self.c_in]
            for k in range(self.kernel):
                lhs[:, k * self.c_in : (k + 1) * self.c_in] = rows[k * d : k * d + n]
        if self.bias is None:
            return torch.mm(lhs, self.weight, out=out)
        return torch.addmm(self.bias, lhs, self.weight, out=out)


class _ConvTranspose:
    """ConvTranspose1d(kernel 2s, stride s, padding p) by its s output phases."""

    def __init__(self, m: WNConvTranspose1d, dtype: torch.dtype = torch.float32):
        w = m.weight.detach().to(dtype)  # (C_in, C_out, 2s)
        self.c_in, self.c_out, k = w.shape
        self.stride, self.padding = m.stride, m.padding
        assert k == 2 * self.stride and self.padding <= self.stride, "Oobleck upsampling layout"
        s = self.stride
        # (C_in, C_out, s) -> (C_in, s * C_out): column r * C_out + c is phase r, channel c.
        self.w_now = w[:, :, :s].permute(0, 2, 1).reshape(self.c_in, s * self.c_out).contiguous()
        self.w_prev = w[:, :, s:].permute(0, 2, 1).reshape(self.c_in, s * self.c_out).contiguous()
        self.bias = m.bias.detach()


class _Buffers:
    """Scratch tensors reused across tiles, grown on demand (no allocation per tile)."""

    def __init__(self):
        self._store: dict[str, torch.Tensor] = {}

    def get(self, name: str, rows: int, cols: int, like: torch.Tensor, dtype: torch.dtype | None = None):
        dtype = dtype or like.dtype
        buf = self._store.get(name)
        if buf is None or buf.numel() < rows * cols or buf.dtype != dtype or buf.device != like.device:
            buf = torch.empty(rows * cols, dtype=dtype, device=like.device)
            self._store[name] = buf
        return buf[: rows * cols].view(rows, cols)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _rows(channels: int) -> int:
    return max(MIN_TILE_ROWS, TILE_ELEMENTS // channels)


def _window(x: torch.Tensor, base: int, start: int, stop: int, snake: _Snake | None, out: torch.Tensor):
    """Rows start..stop of a layer's input, snaked into `out`. `x` holds rows base..base + len(x);
    rows outside it read as zeros (callers only reach past it beyond the input's ends)."""
    lo, hi = max(base, start), min(base + x.shape[0], stop)
    if hi > lo:
        inner = out[lo - start : hi - start]
        if snake is None:
            inner.copy_(x[lo - base : hi - base])
        else:
            snake.into(x[lo - base : hi - base], inner)
    else:
        lo = hi = start
    out[: lo - start].zero_()
    out[hi - start :].zero_()
    return out


class _Layer:
    """One decoder layer as a streaming stage: output rows a..b from the input rows they need.

    conv: y[t] = conv(snake(x))[t], from rows t - halo .. t + halo (same length).
    residual: y[t] = x[t] + conv1(snake2(conv7(snake1(x))))[t], rows t - halo .. t + halo.
    upsample: y[o], o = j * s + r - p, from rows j - 1 and j (length * s outputs).
    """

    def __init__(self, kind: str, *parts):
        self.kind, self.parts = kind, parts
        self.align = 1  # outputs are made final in whole multiples of this many rows
        if kind == "upsample":
            up = parts[1]
            self.stride, self.padding, self.halo = up.stride, up.padding, 0
        else:
            self.stride, self.padding = 1, 0
            self.halo = parts[1].halo
            # Winograd's blocks: a block cut by the end of what has arrived would read zeros
            # where the whole decode reads rows, and round its kept outputs differently.
            self.align = parts[1].rows_computed(1)

    def out_length(self, length: int) -> int:
        return length * self.stride

    def ready(self, available: int, length: int) -> int:
        """How many output rows are final once input rows 0..available of `length` are known."""
        if available >= length:
            return self.out_length(length)
        return max(0, available * self.stride - self.padding - self.halo) // self.align * self.align

    def first_needed(self, done: int) -> int:
        """The first input row that output rows from `done` on still read."""
        if self.kind == "upsample":
            return max(0, (done + self.padding) // self.stride - 1)
        return max(0, done - self.halo)


class _Stream:
    """A layer's state while streaming: input rows base..base + len(rows), output rows made."""

    def __init__(self, layer: _Layer, length: int):
        self.layer, self.length = layer, length
        self.rows: torch.Tensor | None = None
        self.base = 0
        self.available = 0
        self.done = 0


class TiledDecoder:
    """Callable latents (B, C, T) -> audio (B, channels, T * ratio), from a loaded decoder; `stream`
    decodes one item in time order."""

    def __init__(
        self,
        decoder: OobleckDecoder,
        dtype: torch.dtype = torch.float32,
        snake_dtype: torch.dtype = torch.float32,
        winograd: bool = False,
    ):
        self.dtype = dtype  # of the products (module docstring)
        layers = list(decoder.layers)
        self.layers = [_Layer("conv", None, _Conv(layers[0], dtype))]
        for block in layers[1:-3]:
            snake, up, *units = block.layers
            self.layers.append(_Layer("upsample", _Snake(snake, snake_dtype), _ConvTranspose(up, dtype)))
            for u in units:
                self.layers.append(_Layer("residual", *self._unit(u, dtype, snake_dtype, winograd)))
        self.layers.append(_Layer("conv", _Snake(layers[-3], snake_dtype), _Conv(layers[-2], dtype)))
        self.tanh = isinstance(layers[-1], nn.Tanh)
        self.buffers = [_Buffers()]  # one set of scratch tensors per worker thread
        self.workers = 1
        self._pool: ThreadPoolExecutor | None = None

    @staticmethod
    def _unit(u: ResidualUnit, dtype: torch.dtype, snake_dtype: torch.dtype, winograd: bool):
        snake1, conv7, snake2, conv1 = u.layers
        conv7 = _Conv(conv7, dtype, winograd)
        return _Snake(snake1, snake_dtype), conv7, _Snake(snake2, snake_dtype), _Conv(conv1, dtype)

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        out = [torch.cat(list(self.stream(z, [z.shape[1]]))) for z in latents]  # each (samples, channels)
        return torch.stack(out).transpose(1, 2)  # (B, channels, samples)

    @torch.no_grad()
    def stream(self, z: torch.Tensor, pushes: list[int]):
        """Latents z (C, T) fed `pushes` frames at a time (summing to T): yields audio (samples, channels),
        in order, as it becomes final. The pieces joined equal the whole decode to float rounding."""
        assert sum(pushes) == z.shape[1], "the pushes must cover every frame"
        x = z.t().contiguous()  # (T, C)
        states, length = [], x.shape[0]
        for layer in self.layers:
            states.append(_Stream(layer, length))
            length = layer.out_length(length)
        fed = 0
        for count in pushes:
            new = self._push(states, x[fed : fed + count], z.device.type)
            fed += count
            if new.shape[0]:
                yield new.tanh() if self.tanh else new

    def _push(self, states: list, new: torch.Tensor, device: str) -> torch.Tensor:
        """Feeds input rows through every layer; the audio rows that became final."""
        workers = torch.get_num_threads() if device == "cpu" else 1
        self.workers = workers
        if workers > 1:
            # One run of tiles per core, each op single-threaded: no barrier after every small op
            # (thousands per decode), and a core that another process delays holds up only its run.
            torch.set_num_threads(1)
        try:
            for state in states:
                new = self._advance(state, new)
            return new
        finally:
            if workers > 1:
                torch.set_num_threads(workers)

    def _advance(self, state: _Stream, new: torch.Tensor) -> torch.Tensor:
        """Appends input rows to a layer; returns the output rows that became final."""
        layer = state.layer
        keep = layer.first_needed(state.done) - state.base
        if state.rows is None:
            state.rows = new
        elif new.shape[0]:
            state.rows = torch.cat([state.rows[keep:], new]) if keep > 0 else torch.cat([state.rows, new])
            state.base += max(0, keep)
        state.available += new.shape[0]
        a, b = state.done, layer.ready(state.available, state.length)
        if b <= a:
            return new.new_empty(0, state.rows.shape[1] if layer.kind == "residual" else layer.parts[1].c_out)
        state.done = b
        x, base = state.rows, state.base
        if layer.kind == "conv":
            return self._conv(x, base, a, b, *layer.parts)
        if layer.kind == "residual":
            return self._residual(x, base, a, b, *layer.parts)
        return self._upsample(x, base, a, b, *layer.parts)

    def _over_tiles(self, first: int, last: int, step: int, body, align: int = 1) -> None:
        """body(start, n, buffers) for the tiles of `step` rows covering rows first..last; with
        several workers each takes a contiguous run of tiles, with scratch buffers of its own.
        Tiles are whole multiples of `align` rows but the last (Winograd's blocks: none wasted)."""
        count = last - first
        step = _round_up(step, align)
        workers = min(self.workers, -(-count // 64))  # no runs of fewer than 64 rows
        if workers <= 1:
            for start in range(first, last, step):
                body(start, min(step, last - start), self.buffers[0])
            return
        per_worker = _round_up(-(-count // workers), align)
        workers = -(-count // per_worker)
        step = min(step, per_worker)  # a layer of one tile still splits across the workers
        while len(self.buffers) < workers:
            self.buffers.append(_Buffers())
        if self._pool is None or self._pool._max_workers < workers:
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="decoder")

        def run(w: int) -> None:
            lo, hi = first + w * per_worker, min(last, first + (w + 1) * per_worker)
            for start in range(lo, hi, step):
                body(start, min(step, hi - start), self.buffers[w])

        for done in [self._pool.submit(run, w) for w in range(workers)]:
            done.result()

    def _conv(self, x, base: int, a: int, b: int, snake: _Snake | None, conv: _Conv) -> torch.Tensor:
        h = conv.halo
        out = x.new_empty(b - a, conv.c_out)

        def tile(s: int, n: int, buffers: _Buffers) -> None:
            window = buffers.get("window", n + 2 * h, conv.c_in, x, self.dtype)
            cols = buffers.get("cols", n, conv.kernel * conv.c_in, x, self.dtype) if conv.needs_cols else None
            rows = _window(x, base, s - h, s + n + h, snake, window)
            conv.tile(rows, n, cols, out[s - a : s - a + n])

        self._over_tiles(a, b, _rows(max(conv.c_in, conv.c_out)), tile)
        return out

    def _residual(self, x, base: int, a: int, b: int, snake1, conv7: _Conv, snake2, conv1: _Conv) -> torch.Tensor:
        channels, h = x.shape[1], conv7.halo
        out = x.new_empty(b - a, channels)

        def tile(s: int, n: int, buffers: _Buffers) -> None:
            # Winograd computes whole blocks: only the last tile of the input has rows past n
            # (zeros, past the end), and their outputs are dropped.
            reach = conv7.rows_computed(n)
            window = buffers.get("window", reach + 2 * h, channels, x, self.dtype)
            cols = buffers.get("cols", n, conv7.kernel * channels, x, self.dtype) if conv7.needs_cols else None
            rows = _window(x, base, s - h, s + reach + h, snake1, window)
            y = conv7.tile(rows, n, cols, buffers.get("mid", n, channels, x, self.dtype))
            z = snake2.into(y, buffers.get("snaked", n, channels, x, self.dtype))
            target = out[s - a : s - a + n]
            conv1.tile(z, n, cols, target)
            target.add_(x[s - base : s - base + n])

        self._over_tiles(a, b, _rows(channels), tile, conv7.rows_computed(1))
        return out

    def _upsample(self, x, base: int, a: int, b: int, snake: _Snake, up: _ConvTranspose) -> torch.Tensor:
        s_, p = up.stride, up.padding
        out = x.new_empty(b - a, up.c_out)

        # Output o = j*s + r - p comes from input rows j and j - 1 (rows past the input read as zeros).
        def tile(j0: int, n: int, buffers: _Buffers) -> None:
            window = buffers.get("window", n + 1, up.c_in, x, self.dtype)
            rows = _window(x, base, j0 - 1, j0 + n, snake, window)  # rows[i] = x[j0 - 1 + i]
            z = torch.mm(rows[1:], up.w_now, out=buffers.get("phases", n, s_ * up.c_out, x, self.dtype))
            z.addmm_(rows[:-1], up.w_prev)
            z = z.view(n * s_, up.c_out)  # row q - j0*s, with q = o + p
            lo, hi = max(a, j0 * s_ - p), min(b, (j0 + n) * s_ - p)
            torch.add(z[lo + p - j0 * s_ : hi + p - j0 * s_], up.bias, out=out[lo - a : hi - a])

        self._over_tiles((a + p) // s_, (b - 1 + p) // s_ + 1, _rows(max(up.c_in, s_ * up.c_out)), tile)
        return out
