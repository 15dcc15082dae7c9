/* Switchboard minimal browser client: plain DOM + the Socket.IO client served by the node.
 * All user-supplied text goes through textContent; nothing user-controlled reaches innerHTML. */
'use strict'
;(() => {
  const $ = (id) => document.getElementById(id)
  const el = (tag, cls, text) => {
    const e = document.createElement(tag)
    if (cls) e.className = cls
    if (text !== undefined) e.textContent = text
    return e
  }
  const ROOM_ID = /^[A-Za-z0-9:_.-]{1,128}$/
  const BAD_ID = 'Room ids are 1–128 characters: letters, digits, ":", "_", "." or "-".'
  const SESSION_KEY = 'switchboard.session'
  const LAST_ROOM_KEY = 'switchboard.lastRoom'
  const ACK_MS = 10000
  const RETRYABLE = new Set(['RATE_LIMITED', 'UNAVAILABLE', 'INTERNAL', 'TIMEOUT'])

  let session = null // { token, userId, username }
  let socket = null
  let rooms = new Map() // roomId -> { id, name, private, lastSeq, lastReadSeq, unread }
  let room = null // the open room (see openRoom)
  const online = new Map() // userId -> username
  const pending = new Map() // clientMsgId -> { el, roomId, text }
  const typers = new Map() // userId -> { username, timer }
  let lastTypingSent = 0
  let readTimer = 0
  let errorTimer = 0
  const composer = $('composer')
  const list = $('messages')
  const scroller = $('scroller')

  // ---------- helpers ----------
  function showBanner(text) {
    $('banner').textContent = text
    $('banner').hidden = !text
  }
  function showError(text) {
    clearTimeout(errorTimer)
    $('error').textContent = text
    $('error').hidden = !text
    if (text) errorTimer = setTimeout(() => showError(''), 10000)
  }
  const fail = (err) => { if (!err.auth) showError(err.message) }
  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID() // secure contexts only (https, localhost)
    const b = crypto.getRandomValues(new Uint8Array(16))
    b[6] = (b[6] & 15) | 64
    b[8] = (b[8] & 63) | 128
    const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('')
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
  }
  function decodeJwt(token) {
    try {
      const b64 = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')
      return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))))
    } catch {
      return null
    }
  }
  function fmtTime(ts) {
    const d = new Date(ts)
    if (Number.isNaN(d.getTime())) return ''
    const t = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    return d.toDateString() === new Date().toDateString() ? t : `${d.toLocaleDateString()} ${t}`
  }
  const nearBottom = () => scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80
  const scrollBottom = () => { scroller.scrollTop = scroller.scrollHeight }

  async function api(path, opts = {}) {
    const headers = { authorization: `Bearer ${session.token}` }
    if (opts.body) headers['content-type'] = 'application/json'
    const res = await fetch(path, { ...opts, headers })
    const body = await res.json().catch(() => ({}))
    if (res.status === 401) {
      signOut(`${body.message || 'Your session is no longer valid'}. Please sign in again.`)
      throw Object.assign(new Error('unauthorized'), { auth: true })
    }
    if (!res.ok) throw new Error(`${body.message || res.statusText} (${body.error || res.status})`)
    return body
  }

  // ---------- session ----------
  function signOut(message) {
    localStorage.removeItem(SESSION_KEY)
    session = null
    const s = socket
    socket = null
    if (s) s.disconnect()
    closeRoom('')
    rooms = new Map()
    online.clear()
    $('room-list').replaceChildren()
    showBanner('')
    showError('')
    $('signin-msg').textContent = message || ''
    $('chat-view').hidden = true
    $('whoami').hidden = true
    $('signin-view').hidden = false
    $('signin-name').focus()
  }

  function start(s) {
    session = s
    localStorage.setItem(SESSION_KEY, JSON.stringify(s))
    $('signin-view').hidden = true
    $('chat-view').hidden = false
    $('whoami').hidden = false
    $('me-name').textContent = s.username
    $('signin-msg').textContent = ''
    closeRoom('Pick a room')
    connect()
    const last = localStorage.getItem(LAST_ROOM_KEY)
    if (last && ROOM_ID.test(last)) openRoom(last)
  }

  $('signin-form').addEventListener('submit', async (e) => {
    e.preventDefault()
    const username = $('signin-name').value.trim()
    const btn = $('signin-form').querySelector('button')
    if (!username) return
    btn.disabled = true
    try {
      const res = await fetch('/api/dev/token', {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username }),
      })
      const body = await res.json().catch(() => ({}))
      if (!res.ok) throw new Error(`Sign-in failed: ${body.message || res.statusText} (${body.error || res.status})`)
      start({ token: body.token, userId: body.userId, username: body.username })
    } catch (err) {
      $('signin-msg').textContent = err.message
    } finally {
      btn.disabled = false
    }
  })

  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault()
    const token = $('token-input').value.trim()
    const claims = decodeJwt(token)
    if (!claims || !claims.sub) return void ($('signin-msg').textContent = 'That does not look like a JWT with a "sub" claim.')
    $('token-input').value = ''
    start({ token, userId: String(claims.sub), username: String(claims.name || claims.sub) })
  })

  $('signout').addEventListener('click', () => {
    stopTyping()
    localStorage.removeItem(LAST_ROOM_KEY)
    signOut('You are signed out.')
  })

  // ---------- connection ----------
  function connect() {
    const s = io('/chat', { auth: { token: session.token }, transports: ['websocket', 'polling'], forceNew: true })
    socket = s
    showBanner('Connecting…')
    const on = (event, fn) => s.on(event, (...args) => { if (s === socket) fn(...args) })
    const inRoom = (fn) => (e) => { if (room && e.roomId === room.id) fn(e) }

    on('connect', () => {
      showBanner('')
      online.clear()
      online.set(session.userId, session.username)
      if (room) joinRoom() // after a reconnect this asks only for what was missed
      refreshRooms()
    })
    on('disconnect', (reason) => {
      showBanner('Disconnected — reconnecting…')
      clearTypers()
      // The server closed us (draining node, expired token): come back after a short jitter.
      if (reason === 'io server disconnect') setTimeout(() => s === socket && s.connect(), 500 + Math.random() * 1500)
    })
    on('connect_error', (err) => {
      const code = err.data && err.data.code
      if (code && code.startsWith('AUTH_')) {
        const why = code === 'AUTH_EXPIRED' ? 'Your session has expired' : code === 'AUTH_REQUIRED' ? 'Please sign in' : 'Your token was refused'
        return signOut(`${why} (${err.message}, ${code}). Please sign in again.`)
      }
      showBanner(`Cannot connect (${err.message}) — retrying…`)
      if (!s.active) setTimeout(() => s === socket && s.connect(), 3000)
    })
    s.io.on('reconnect_attempt', (n) => { if (s === socket) showBanner(`Reconnecting… (attempt ${n})`) })

    on('room:history', inRoom(onHistory))
    on('chat:message', onMessage)
    on('chat:edited', (e) => updateRow(e, { text: e.text, editedAt: e.editedAt }))
    on('chat:deleted', (e) => updateRow(e, { deletedAt: e.deletedAt }))
    on('chat:typing', inRoom(onTyping))
    on('chat:read', inRoom((r) => {
      room.reads[r.userId] = Math.max(room.reads[r.userId] || 0, r.seq)
      room.memberIds.add(r.userId)
      renderSeen()
    }))
    on('presence:list', (users) => { for (const u of users) online.set(u.userId, u.username); renderOnline() })
    on('presence:online', (u) => { online.set(u.userId, u.username); renderOnline() })
    on('presence:offline', (u) => { online.delete(u.userId); renderOnline() })
    on('room:user-joined', inRoom((u) => {
      room.memberIds.add(u.userId)
      online.set(u.userId, u.username)
      systemLine(`${u.username} joined the room`)
    }))
    on('room:user-left', inRoom((u) => {
      room.memberIds.delete(u.userId)
      systemLine(`${u.username} left the room`)
    }))
  }

  // ---------- rooms ----------
  async function refreshRooms() {
    try {
      const body = await api('/api/rooms')
      rooms = new Map(body.rooms.map((r) => [r.id, r]))
      renderRooms()
      if (room) $('room-title').textContent = rooms.get(room.id)?.name || room.id
    } catch (err) {
      fail(err)
    }
  }

  function renderRooms() {
    const ul = $('room-list')
    ul.replaceChildren()
    if (rooms.size === 0) ul.append(el('li', 'empty', 'No rooms yet. Join or create one below.'))
    for (const r of rooms.values()) {
      const b = el('button', 'room-btn')
      Object.assign(b, { type: 'button', title: r.id })
      Object.assign(b.dataset, { testid: 'room-item', roomId: r.id })
      b.append(el('span', 'room-name', r.name))
      if (r.private) b.append(el('span', 'tag', 'private'))
      const current = room && room.id === r.id
      if (current) b.setAttribute('aria-current', 'true')
      if (r.unread > 0 && !current) {
        const badge = el('span', 'badge', String(r.unread))
        badge.dataset.testid = 'unread'
        badge.setAttribute('aria-label', `${r.unread} unread`)
        b.append(badge)
      }
      b.addEventListener('click', () => openRoom(r.id))
      const li = el('li')
      li.append(b)
      ul.append(li)
    }
  }

  function closeRoom(title) {
    room = null
    pending.clear()
    clearTypers()
    list.replaceChildren()
    $('room-title').textContent = title
    $('online-users').replaceChildren()
    $('seen').textContent = ''
    $('load-older').hidden = true
    composer.disabled = $('send').disabled = true
  }

  function openRoom(id) {
    if (room && room.id === id) return
    flushRead()
    stopTyping()
    closeRoom(rooms.get(id)?.name || id)
    room = { id, maxSeq: 0, minSeq: Infinity, seqs: new Set(), reads: {}, memberIds: new Set(), readSent: 0, rejoin: false }
    localStorage.setItem(LAST_ROOM_KEY, id)
    composer.disabled = $('send').disabled = false
    renderRooms()
    if (socket && socket.connected) joinRoom()
  }

  function joinRoom() {
    const r = room
    r.rejoin = r.maxSeq > 0
    const payload = r.rejoin ? { roomId: r.id, lastSeq: r.maxSeq } : { roomId: r.id }
    socket.timeout(ACK_MS).emit('room:join', payload, (err, ack) => {
      if (r !== room) return
      if (err) return void (socket && socket.connected && showError(`Joining "${r.id}" timed out; try again.`))
      if (ack.status !== 'ok') {
        if (localStorage.getItem(LAST_ROOM_KEY) === r.id) localStorage.removeItem(LAST_ROOM_KEY)
        closeRoom('Pick a room')
        renderRooms()
        return showError(`Could not open "${r.id}": ${ack.error} (${ack.code})`)
      }
      r.memberIds.add(session.userId)
      for (const u of ack.online || []) {
        online.set(u.userId, u.username)
        r.memberIds.add(u.userId)
      }
      renderOnline()
      if (!rooms.has(r.id)) refreshRooms()
    })
  }

  $('join-form').addEventListener('submit', (e) => {
    e.preventDefault()
    const id = $('room-join-input').value.trim()
    if (!ROOM_ID.test(id)) return showError(BAD_ID)
    $('room-join-input').value = ''
    openRoom(id)
  })

  $('create-form').addEventListener('submit', async (e) => {
    e.preventDefault()
    const name = $('room-create-name').value.trim()
    const id = $('room-create-id').value.trim()
    if (!name) return
    if (id && !ROOM_ID.test(id)) return showError(BAD_ID)
    const body = { name, ...(id && { id }), ...($('room-create-private').checked && { private: true }) }
    const btn = $('create-form').querySelector('button[type=submit]')
    btn.disabled = true
    try {
      const created = await api('/api/rooms', { method: 'POST', body: JSON.stringify(body) })
      $('create-form').reset()
      await refreshRooms()
      openRoom(created.id)
    } catch (err) {
      fail(err)
    } finally {
      btn.disabled = false
    }
  })

  // ---------- messages ----------
  function dot(userId) {
    const d = el('span', online.has(userId) ? 'dot on' : 'dot')
    d.dataset.user = userId
    d.setAttribute('aria-hidden', 'true')
    return d
  }

  function renderRow(m, status) {
    const li = el('li', m.userId === session.userId ? 'msg mine' : 'msg')
    li.dataset.testid = 'message'
    if (m.seq !== undefined) li.dataset.seq = String(m.seq)
    if (m.id) li.dataset.id = m.id
    const who = el('span', 'who')
    who.append(dot(m.userId), document.createTextNode(m.username))
    const time = el('time', null, fmtTime(m.timestamp))
    time.dateTime = m.timestamp
    const meta = el('div', 'meta')
    meta.append(who, time, el('span', 'status', status || ''))
    li.append(meta, el('div', 'text'))
    li.msg = m
    fillText(li)
    return li
  }

  function fillText(li) {
    const m = li.msg
    const text = li.querySelector('.text')
    text.classList.toggle('deleted', Boolean(m.deletedAt))
    text.textContent = m.deletedAt ? 'This message was deleted.' : m.text
    if (m.editedAt && !m.deletedAt) text.append(el('span', 'edited', ' (edited)'))
    if (m.attachment && !m.deletedAt) text.append(el('span', 'chip', `📎 ${m.attachment.fileName}`))
  }

  function updateRow(e, patch) {
    const row = room && e.roomId === room.id && list.querySelector(`[data-id="${CSS.escape(e.messageId)}"]`)
    if (!row) return
    row.msg = { ...row.msg, ...patch }
    fillText(row)
  }

  /** Inserts a stored message in seq order; returns null when that seq is already shown. */
  function addMessage(m, status) {
    const r = room
    if (!r || m.roomId !== r.id || r.seqs.has(m.seq)) return null
    const newest = m.seq > r.maxSeq
    r.seqs.add(m.seq)
    r.maxSeq = Math.max(r.maxSeq, m.seq)
    r.minSeq = Math.min(r.minSeq, m.seq)
    r.memberIds.add(m.userId)
    const row = renderRow(m, status)
    const after = newest ? null : [...list.querySelectorAll(':scope > [data-seq]')].find((n) => Number(n.dataset.seq) > m.seq)
    list.insertBefore(row, after || list.querySelector(':scope > .pending'))
    $('load-older').hidden = !(r.minSeq > 1 && r.minSeq !== Infinity)
    return row
  }

  function systemLine(text) {
    list.insertBefore(el('li', 'system', text), list.querySelector(':scope > .pending'))
    if (nearBottom()) scrollBottom()
    renderOnline()
  }

  function onHistory(h) {
    const r = room
    if (r.rejoin && h.hasMore) {
      // Too much was missed to splice in: show the newest page; "load older" reaches the rest.
      list.querySelectorAll(':scope > :not(.pending)').forEach((n) => n.remove())
      Object.assign(r, { seqs: new Set(), maxSeq: 0, minSeq: Infinity })
    }
    for (const [userId, seq] of Object.entries(h.reads || {})) {
      r.reads[userId] = Math.max(r.reads[userId] || 0, seq)
      r.memberIds.add(userId)
    }
    const stick = !r.rejoin || nearBottom()
    for (const m of h.messages) addMessage(m)
    if (stick) scrollBottom()
    renderOnline()
    afterDisplay()
  }

  function onMessage(m) {
    if (!room || m.roomId !== room.id) {
      const info = rooms.get(m.roomId) // a room this socket joined earlier: count it as unread
      if (info && m.userId !== session.userId) {
        info.lastSeq = Math.max(info.lastSeq, m.seq)
        info.unread = Math.max(0, info.lastSeq - info.lastReadSeq)
        renderRooms()
      }
      return
    }
    if (room.seqs.has(m.seq)) return
    let status
    if (m.userId === session.userId) {
      // Our own broadcast usually arrives before the ack: it replaces the matching pending row.
      for (const [id, p] of pending) {
        if (p.text !== m.text) continue
        p.el.remove()
        pending.delete(id)
        status = 'sent'
        break
      }
    }
    const typer = typers.get(m.userId)
    if (typer) { clearTimeout(typer.timer); typers.delete(m.userId); renderTyping() }
    const stick = nearBottom() || status
    addMessage(m, status)
    if (stick) scrollBottom()
    afterDisplay()
  }

  function afterDisplay() {
    renderSeen()
    clearTimeout(readTimer)
    readTimer = setTimeout(sendRead, 300)
  }

  function sendRead() {
    const r = room
    if (!r || !socket || !socket.connected || document.hidden || r.maxSeq <= r.readSent) return
    const seq = (r.readSent = r.maxSeq)
    r.reads[session.userId] = seq
    socket.emit('chat:read', { roomId: r.id, seq }, (ack) => {
      if (!ack || ack.status !== 'ok') return void (r.readSent = 0)
      const info = rooms.get(r.id)
      if (!info) return
      info.lastSeq = Math.max(info.lastSeq, seq)
      info.lastReadSeq = Math.max(info.lastReadSeq, seq)
      info.unread = Math.max(0, info.lastSeq - info.lastReadSeq)
      renderRooms()
    })
  }
  function flushRead() {
    clearTimeout(readTimer)
    sendRead()
  }
  document.addEventListener('visibilitychange', () => { if (!document.hidden && room) afterDisplay() })
  window.addEventListener('pagehide', flushRead)

  function renderSeen() {
    const r = room
    const n = r ? Object.entries(r.reads).filter(([u, seq]) => u !== session.userId && seq >= r.maxSeq).length : 0
    $('seen').textContent = r && r.maxSeq > 0 && n > 0 ? `Seen by ${n}` : ''
  }

  function renderOnline() {
    document.querySelectorAll('.dot[data-user]').forEach((d) => d.classList.toggle('on', online.has(d.dataset.user)))
    const ul = $('online-users')
    ul.replaceChildren()
    if (!room) return
    for (const [userId, username] of online) {
      if (!room.memberIds.has(userId)) continue
      const li = el('li')
      li.dataset.userId = userId
      li.append(dot(userId), document.createTextNode(userId === session.userId ? `${username} (you)` : username))
      ul.append(li)
    }
  }

  // ---------- typing ----------
  function onTyping(t) {
    if (t.userId === session.userId) return
    const prev = typers.get(t.userId)
    if (prev) clearTimeout(prev.timer)
    if (!t.isTyping) typers.delete(t.userId)
    else typers.set(t.userId, { username: t.username, timer: setTimeout(() => { typers.delete(t.userId); renderTyping() }, 3000) })
    renderTyping()
  }

  function clearTypers() {
    for (const t of typers.values()) clearTimeout(t.timer)
    typers.clear()
    renderTyping()
  }

  function renderTyping() {
    const n = [...typers.values()].map((t) => t.username)
    $('typing').textContent = n.length === 0 ? '' : n.length === 1 ? `${n[0]} is typing…`
      : n.length === 2 ? `${n[0]} and ${n[1]} are typing…` : 'Several people are typing…'
  }

  function stopTyping() {
    if (!lastTypingSent || !room || !socket) return
    lastTypingSent = 0
    socket.volatile.emit('chat:typing', { roomId: room.id, isTyping: false })
  }

  composer.addEventListener('input', () => {
    if (!room || !socket || !composer.value.trim() || Date.now() - lastTypingSent < 2000) return
    lastTypingSent = Date.now()
    socket.volatile.emit('chat:typing', { roomId: room.id, isTyping: true })
  })
  composer.addEventListener('blur', stopTyping)
  composer.addEventListener('keydown', (e) => {
    if (e.key !== 'Enter' || e.shiftKey || e.isComposing) return
    e.preventDefault()
    send()
  })
  $('composer-form').addEventListener('submit', (e) => {
    e.preventDefault()
    send()
  })

  // ---------- sending ----------
  function send() {
    const text = composer.value.trim()
    if (!text || !room || !socket) return
    stopTyping()
    composer.value = ''
    const payload = { roomId: room.id, text, clientMsgId: uuid() }
    const row = renderRow({ roomId: room.id, userId: session.userId, username: session.username, text, timestamp: new Date().toISOString() }, 'sending…')
    row.classList.add('pending')
    list.append(row)
    scrollBottom()
    pending.set(payload.clientMsgId, { el: row, roomId: room.id, text })
    emitSend(payload)
  }

  function emitSend(payload) {
    socket.timeout(ACK_MS).emit('chat:message', payload, (err, ack) => {
      const entry = pending.get(payload.clientMsgId)
      if (!entry) return // already replaced by the broadcast (or the room was closed)
      if (err) return failPending(payload, entry, 'TIMEOUT', 'no reply from the server')
      if (ack.status !== 'ok') return failPending(payload, entry, ack.code, ack.error)
      pending.delete(payload.clientMsgId)
      entry.el.remove()
      const m = { ...entry.el.msg, id: ack.messageId, seq: ack.seq }
      const row = addMessage(m, 'sent') || list.querySelector(`[data-seq="${ack.seq}"]`)
      if (row) row.querySelector('.status').textContent = 'sent'
      afterDisplay()
    })
  }

  function failPending(payload, entry, code, text) {
    showError(`Message not sent: ${text} (${code})`)
    const row = entry.el
    if (!RETRYABLE.has(code)) {
      // Nothing to retry (e.g. BAD_REQUEST): drop the row and hand the text back for editing.
      pending.delete(payload.clientMsgId)
      row.remove()
      if (!composer.value) composer.value = payload.text
      return
    }
    row.classList.add('failed')
    row.querySelector('.status').textContent = 'not sent'
    const retry = el('button', 'retry', 'Retry')
    retry.type = 'button'
    retry.addEventListener('click', () => {
      retry.remove()
      row.classList.remove('failed')
      row.querySelector('.status').textContent = 'sending…'
      if (socket) emitSend(payload) // same clientMsgId: the server will not store it twice
    })
    row.append(retry)
  }

  // ---------- older history ----------
  $('load-older').addEventListener('click', async () => {
    const r = room
    const btn = $('load-older')
    if (!r || !(r.minSeq > 1 && r.minSeq !== Infinity)) return
    btn.disabled = true
    try {
      const body = await api(`/api/rooms/${encodeURIComponent(r.id)}/messages?before=${r.minSeq}&limit=50`)
      if (r !== room) return
      const fromBottom = scroller.scrollHeight - scroller.scrollTop
      for (const m of body.messages) addMessage(m)
      scroller.scrollTop = scroller.scrollHeight - fromBottom
      if (!body.hasMore) btn.hidden = true
    } catch (err) {
      fail(err)
    } finally {
      btn.disabled = false
    }
  })

  // ---------- boot ----------
  let saved = null
  try {
    saved = JSON.parse(localStorage.getItem(SESSION_KEY))
  } catch {}
  const claims = saved && saved.token ? decodeJwt(saved.token) : null
  if (!saved || !saved.token) signOut('')
  else if (claims && claims.exp && claims.exp * 1000 < Date.now()) signOut('Your session has expired. Please sign in again.')
  else start(saved)
})()
