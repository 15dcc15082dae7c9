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
  const SESSION_KEY = 'switchboard.session'
  const LAST_ROOM_KEY = 'switchboard.lastRoom'
  const ACK_MS = 10000
  const RETRYABLE = new Set(['RATE_LIMITED', 'UNAVAILABLE', 'INTERNAL', 'TIMEOUT'])

  let session = null // { token, userId, username }
  let socket = null
  let rooms = new Map() // roomId -> { id, name, private, lastSeq, lastReadSeq, unread }
  let room = null // the open room's state (see newRoom)
  const online = new Map() // userId -> username
  const pending = new Map() // clientMsgId -> { el, roomId, text }
  const typers = new Map() // userId -> { username, timer }
  let lastTypingSent = 0
  let typingOn = false
  let readTimer = 0
  let errorTimer = 0

  const composer = $('composer')
  const list = $('messages')
  const scroller = $('scroller')

  // ---------- small helpers ----------
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
  function saveSession(s) {
    session = s
    localStorage.setItem(SESSION_KEY, JSON.stringify(s))
  }

  function signOut(message) {
    localStorage.removeItem(SESSION_KEY)
    session = null
    if (socket) {
      const s = socket
      socket = null
      s.disconnect()
    }
    room = null
    rooms = new Map()
    online.clear()
    pending.clear()
    for (const t of typers.values()) clearTimeout(t.timer)
    typers.clear()
    list.replaceChildren()
    $('room-list').replaceChildren()
    showBanner('')
    showError('')
    $('signin-msg').textContent = message || ''
    $('chat-view').hidden = true
    $('whoami').hidden = true
    $('signin-view').hidden = false
    $('signin-name').focus()
  }

  function start() {
    $('signin-view').hidden = true
    $('chat-view').hidden = false
    $('whoami').hidden = false
    $('me-name').textContent = session.username
    $('signin-msg').textContent = ''
    closeRoom('Pick a room')
    connect()
    const last = localStorage.getItem(LAST_ROOM_KEY)
    if (last && ROOM_ID.test(last)) openRoom(last)
  }

  $('signin-form').addEventListener('submit', async (e) => {
    e.preventDefault()
    const username = $('signin-name').value.trim()
    if (!username) return
    const btn = $('signin-form').querySelector('button')
    btn.disabled = true
    try {
      const res = await fetch('/api/dev/token', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username }),
      })
      const body = await res.json().catch(() => ({}))
      if (!res.ok) throw new Error(`Sign-in failed: ${body.message || res.statusText} (${body.error || res.status})`)
      saveSession({ token: body.token, userId: body.userId, username: body.username })
      start()
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
    saveSession({ token, userId: String(claims.sub), username: String(claims.name || claims.sub) })
    start()
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
    const mine = (fn) => (...args) => { if (s === socket) fn(...args) }

    s.on('connect', mine(() => {
      showBanner('')
      online.clear()
      online.set(session.userId, session.username)
      if (room) joinRoom()
      refreshRooms()
    }))
    s.on('disconnect', mine((reason) => {
      showBanner('Disconnected — reconnecting…')
      for (const t of typers.values()) clearTimeout(t.timer)
      typers.clear()
      renderTyping()
      // The server closed us (draining node, expired token): come back after a short jitter.
      if (reason === 'io server disconnect') setTimeout(mine(() => s.connect()), 500 + Math.random() * 1500)
    }))
    s.on('connect_error', mine((err) => {
      const code = err.data && err.data.code
      if (code && code.startsWith('AUTH_')) {
        const why = code === 'AUTH_EXPIRED' ? 'Your session has expired' : code === 'AUTH_REQUIRED' ? 'Please sign in' : 'Your token was refused'
        return signOut(`${why} (${err.message}, ${code}). Please sign in again.`)
      }
      showBanner(`Cannot connect (${err.message}) — retrying…`)
      if (!s.active) setTimeout(mine(() => s.connect()), 3000)
    }))
    s.io.on('reconnect_attempt', mine((n) => showBanner(`Reconnecting… (attempt ${n})`)))

    s.on('room:history', mine((h) => { if (room && h.roomId === room.id) onHistory(h) }))
    s.on('chat:message', mine(onMessage))
    s.on('chat:edited', mine((e) => updateRow(e, { text: e.text, editedAt: e.editedAt })))
    s.on('chat:deleted', mine((e) => updateRow(e, { deletedAt: e.deletedAt })))
    s.on('chat:reaction', mine((e) => {
      const row = findRow(e)
      if (!row) return
      const reactions = { ...(row.msg.reactions || {}) }
      const users = new Set(reactions[e.emoji] || [])
      if (e.on) users.add(e.userId)
      else users.delete(e.userId)
      reactions[e.emoji] = [...users]
      updateRow(e, { reactions })
    }))
    s.on('chat:typing', mine(onTyping))
    s.on('chat:read', mine((r) => {
      if (!room || r.roomId !== room.id) return
      room.reads[r.userId] = Math.max(room.reads[r.userId] || 0, r.seq)
      room.memberIds.add(r.userId)
      renderSeen()
    }))
    s.on('presence:list', mine((users) => {
      for (const u of users) online.set(u.userId, u.username)
      renderOnline()
    }))
    s.on('presence:online', mine((u) => { online.set(u.userId, u.username); renderOnline() }))
    s.on('presence:offline', mine((u) => { online.delete(u.userId); renderOnline() }))
    s.on('room:user-joined', mine((u) => {
      if (!room || u.roomId !== room.id) return
      room.memberIds.add(u.userId)
      online.set(u.userId, u.username)
      systemLine(`${u.username} joined the room`)
      renderOnline()
    }))
    s.on('room:user-left', mine((u) => {
      if (!room || u.roomId !== room.id) return
      room.memberIds.delete(u.userId)
      systemLine(`${u.username} left the room`)
      renderOnline()
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
      b.type = 'button'
      b.title = r.id
      b.dataset.testid = 'room-item'
      b.dataset.roomId = r.id
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

  function newRoom(id) {
    return { id, maxSeq: 0, minSeq: Infinity, seqs: new Set(), reads: {}, memberIds: new Set(), readSent: 0, rejoin: false }
  }

  function closeRoom(title) {
    room = null
    list.replaceChildren()
    $('room-title').textContent = title
    $('online-users').replaceChildren()
    $('seen').textContent = ''
    $('load-older').hidden = true
    composer.disabled = true
    $('send').disabled = true
  }

  function openRoom(id) {
    if (room && room.id === id) return
    stopTyping()
    for (const t of typers.values()) clearTimeout(t.timer)
    typers.clear()
    renderTyping()
    pending.clear()
    closeRoom(rooms.get(id)?.name || id)
    room = newRoom(id)
    localStorage.setItem(LAST_ROOM_KEY, id)
    composer.disabled = false
    $('send').disabled = false
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
    if (!ROOM_ID.test(id)) return showError('Room ids are 1–128 characters: letters, digits, ":", "_", "." or "-".')
    $('room-join-input').value = ''
    openRoom(id)
  })

  $('create-form').addEventListener('submit', async (e) => {
    e.preventDefault()
    const name = $('room-create-name').value.trim()
    const id = $('room-create-id').value.trim()
    if (!name) return
    if (id && !ROOM_ID.test(id)) return showError('Room ids are 1–128 characters: letters, digits, ":", "_", "." or "-".')
    const body = { name }
    if (id) body.id = id
    if ($('room-create-private').checked) body.private = true
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
    const meta = el('div', 'meta')
    const who = el('span', 'who')
    who.append(dot(m.userId), document.createTextNode(m.username))
    const time = el('time', null, fmtTime(m.timestamp))
    time.dateTime = m.timestamp
    meta.append(who, time, el('span', 'status', status || ''))
    li.append(meta, el('div', 'text'), el('div', 'extra'))
    li.msg = m
    fillRow(li)
    return li
  }

  function fillRow(li) {
    const m = li.msg
    const text = li.querySelector('.text')
    text.classList.toggle('deleted', Boolean(m.deletedAt))
    text.textContent = m.deletedAt ? 'This message was deleted.' : m.text
    if (m.editedAt && !m.deletedAt) text.append(el('span', 'edited', ' (edited)'))
    const extra = li.querySelector('.extra')
    extra.replaceChildren()
    if (m.replyTo) {
      const target = list.querySelector(`[data-id="${CSS.escape(m.replyTo)}"]`)
      extra.append(el('span', 'chip', `↪ reply to ${target ? target.msg.username : 'an earlier message'}`))
    }
    if (m.attachment && !m.deletedAt) extra.append(el('span', 'chip', `📎 ${m.attachment.fileName}`))
    for (const [emoji, users] of Object.entries(m.reactions || {})) {
      if (users.length) extra.append(el('span', 'chip', `${emoji} ${users.length}`))
    }
  }

  const findRow = (e) => (room && e.roomId === room.id ? list.querySelector(`[data-id="${CSS.escape(e.messageId)}"]`) : null)
  function updateRow(e, patch) {
    const row = findRow(e)
    if (!row) return
    row.msg = { ...row.msg, ...patch }
    fillRow(row)
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
    const firstPending = list.querySelector(':scope > .pending')
    const after = newest ? null : [...list.querySelectorAll(':scope > [data-seq]')].find((n) => Number(n.dataset.seq) > m.seq)
    list.insertBefore(row, after || firstPending)
    $('load-older').hidden = !(r.minSeq > 1 && r.minSeq !== Infinity)
    return row
  }

  function systemLine(text) {
    list.insertBefore(el('li', 'system', text), list.querySelector(':scope > .pending'))
    if (nearBottom()) scrollBottom()
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
      const info = rooms.get(m.roomId)
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
      // Our own broadcast can arrive before the ack: it replaces the matching pending row.
      for (const [id, p] of pending) {
        if (p.roomId === m.roomId && p.text === m.text) {
          p.el.remove()
          pending.delete(id)
          status = 'sent'
          break
        }
      }
    }
    const t = typers.get(m.userId)
    if (t) { clearTimeout(t.timer); typers.delete(m.userId); renderTyping() }
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
    const seq = r.maxSeq
    r.readSent = seq
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
  document.addEventListener('visibilitychange', () => { if (!document.hidden) afterDisplay() })

  function renderSeen() {
    const r = room
    if (!r || r.maxSeq === 0) return void ($('seen').textContent = '')
    const n = Object.entries(r.reads).filter(([u, seq]) => u !== session.userId && seq >= r.maxSeq).length
    $('seen').textContent = n > 0 ? `Seen by ${n}` : ''
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
    if (!room || t.roomId !== room.id || t.userId === session.userId) return
    const prev = typers.get(t.userId)
    if (prev) clearTimeout(prev.timer)
    if (t.isTyping) {
      const timer = setTimeout(() => { typers.delete(t.userId); renderTyping() }, 3000)
      typers.set(t.userId, { username: t.username, timer })
    } else typers.delete(t.userId)
    renderTyping()
  }

  function renderTyping() {
    const names = [...typers.values()].map((t) => t.username)
    $('typing').textContent =
      names.length === 0 ? '' : names.length === 1 ? `${names[0]} is typing…`
        : names.length === 2 ? `${names[0]} and ${names[1]} are typing…` : 'Several people are typing…'
  }

  function stopTyping() {
    if (!typingOn || !room || !socket) return
    typingOn = false
    lastTypingSent = 0
    socket.volatile.emit('chat:typing', { roomId: room.id, isTyping: false })
  }

  composer.addEventListener('input', () => {
    if (!room || !socket || !composer.value.trim()) return
    const now = Date.now()
    if (now - lastTypingSent < 2000) return
    lastTypingSent = now
    typingOn = true
    socket.volatile.emit('chat:typing', { roomId: room.id, isTyping: true })
  })
  composer.addEventListener('blur', stopTyping)
  composer.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault()
      send()
    }
  })

  // ---------- sending ----------
  $('composer-form').addEventListener('submit', (e) => {
    e.preventDefault()
    send()
  })

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
      if (!room || room.id !== payload.roomId) return
      const m = { id: ack.messageId, seq: ack.seq, roomId: payload.roomId, userId: session.userId,
        username: session.username, text: payload.text, timestamp: entry.el.msg.timestamp }
      const row = addMessage(m, 'sent') || list.querySelector(`[data-seq="${ack.seq}"]`)
      if (row) row.querySelector('.status').textContent = 'sent'
      afterDisplay()
    })
  }

  function failPending(payload, entry, code, text) {
    const row = entry.el
    row.classList.add('failed')
    row.querySelector('.status').textContent = 'not sent'
    showError(`Message not sent: ${text} (${code})`)
    const actions = el('div', 'actions')
    if (RETRYABLE.has(code)) {
      const retry = el('button', null, 'Retry')
      retry.type = 'button'
      retry.addEventListener('click', () => {
        actions.remove()
        row.classList.remove('failed')
        row.querySelector('.status').textContent = 'sending…'
        if (socket) emitSend(payload) // same clientMsgId: the server deduplicates
      })
      actions.append(retry)
    }
    const discard = el('button', null, 'Discard')
    discard.type = 'button'
    discard.addEventListener('click', () => { pending.delete(payload.clientMsgId); row.remove() })
    actions.append(discard)
    row.append(actions)
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
  try {
    session = JSON.parse(localStorage.getItem(SESSION_KEY))
  } catch {
    session = null
  }
  const claims = session && session.token ? decodeJwt(session.token) : null
  if (!session || !session.token) signOut('')
  else if (claims && claims.exp && claims.exp * 1000 < Date.now()) signOut('Your session has expired. Please sign in again.')
  else start()
})()
