/** The room id rule (ROOM_ID in the protocol) as an HTML `pattern`: the browser anchors it; no look-ahead needed there. */
export const ROOM_ID_FORM_PATTERN = '[A-Za-z0-9:_.\\-]{1,128}'
export const ROOM_ID_TITLE = '1–128 characters: letters, digits, : _ . -'
