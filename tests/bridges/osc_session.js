// Runs an Open Stage Control session's widgets in Node: Open Stage Control's GUI cannot run here, so this
// stands in for the parts a session uses (widget values, button modes, the onValue script API: value, id,
// get, set, send) and prints the OSC messages the session would send, as JSON.
//
//   node osc_session.js session.json '[{"id": "seconds", "value": 6.5}, {"id": "gen", "tap": true}]'
//
// An action sets a widget's value as a user would ({"value": v}, clamped to a knob's range), taps or
// presses and releases a button ({"tap": true} / {"press": true} / {"release": true}), or is a message
// arriving ({"receive": "/sao/done", "args": [...]}: as Open Stage Control does, each widget at that address
// takes the arguments as its value, the one argument alone, sending nothing back).
'use strict'
const fs = require('fs')
const vm = require('vm')

const [sessionPath, actionsJson] = process.argv.slice(2)
const session = JSON.parse(fs.readFileSync(sessionPath, 'utf8'))
const widgets = {}
const values = {}
const sent = []

;(function walk(w) {
    widgets[w.id] = w
    values[w.id] = w.value !== undefined ? w.value : w.default
    for (const child of [...(w.widgets || []), ...(w.tabs || [])]) walk(child)
})(session.content)

// a button's props, with the widget's own defaults (on 1, off 0, mode toggle)
const prop = (w, name) => (w[name] !== undefined ? w[name] : { on: 1, off: 0, mode: 'toggle' }[name])

function clamp(w, v) {
    if (w.range && typeof v === 'number') return Math.min(Math.max(v, w.range.min), w.range.max)
    return v
}

function send(...args) {
    if (typeof args[0] === 'string' && /^[^/]+:\d+$/.test(args[0])) args.shift() // an explicit host:port target
    sent.push({ address: args[0], args: args.slice(1) })
}

function sendValue(w, v) {
    // a widget sends its address, its preArgs, then its value (a null value sends no argument)
    if (w.bypass || !w.address) return
    const pre = Array.isArray(w.preArgs) ? w.preArgs : w.preArgs !== undefined ? [w.preArgs] : []
    sent.push({ address: w.address, args: v === null || v === undefined ? pre : [...pre, v] })
}

function setValue(id, v, { send: doSend = true } = {}) {
    const w = widgets[id]
    if (!w) throw new Error(`no widget ${id}`)
    v = clamp(w, v)
    values[id] = v
    if (doSend) sendValue(w, v)
    if (w.onValue) {
        const scope = { value: v, id, get: (i) => values[i], set: (i, x, o) => setValue(i, x, o), send, console }
        vm.runInNewContext(`(function () {\n${w.onValue}\n})()`, scope)
    }
}

function receive(address, args) {
    const value = args.length === 0 ? null : args.length === 1 ? args[0] : args
    for (const w of Object.values(widgets)) if (w.address === address) setValue(w.id, value, { send: false })
}

for (const a of JSON.parse(actionsJson)) {
    if ('receive' in a) {
        receive(a.receive, a.args)
        continue
    }
    const w = widgets[a.id]
    if (!w) throw new Error(`no widget ${a.id}`)
    const mode = prop(w, 'mode')
    if ('value' in a) setValue(a.id, a.value)
    else if (w.type !== 'button') throw new Error(`${a.id} is not a button`)
    else if (mode === 'momentary') setValue(a.id, null) // no value sent with the address
    else if (mode === 'toggle') setValue(a.id, values[a.id] === prop(w, 'on') ? prop(w, 'off') : prop(w, 'on'))
    else if (a.release) {
        if (mode === 'push') setValue(a.id, prop(w, 'off')) // tap has no release
    } else setValue(a.id, prop(w, 'on'))
}
process.stdout.write(JSON.stringify({ sent, values }))
